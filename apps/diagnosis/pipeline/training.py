"""Training and evaluation of the three models (no Django; ``manage.py train_model`` wraps it).

Data layout (what public sets ship in)::

    chest / brain:  DIR/train/<label>/*.jpg   and optionally DIR/test/<label>/*.jpg
    router:         DIR/chest_xray/train/...  DIR/brain_mri/train/...  (+ generated negatives)

Rules kept here so that no caller can break them:

* validation is carved from ``train/`` — by patient for chest X-rays (``personNNN`` / ``IM-NNNN``),
  stratified otherwise; early stopping, checkpoint choice, temperature and thresholds use it only;
* ``test/`` is read once, after training, to write the card's test metrics.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import ood
from .artifact import ARCH, WEIGHTS_FILE, _build_from_weights, build_model, file_sha256, load_artifact

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet
from .core import to_model_input
from .exclusions import DEFAULT_EXCLUSIONS, SPECIALIST_DATASET, Exclusions
from .metrics import classification_metrics, write_card
from .ood import KindDescriber
from .preprocess import DESCRIPTIONS as PREPROCESS_DESCRIPTIONS
from .preprocess import apply as preprocess

TASK_LABELS = {
    "router": ["chest_xray", "brain_mri", "unsupported"],
    "chest": ["normal", "bacterial_pneumonia", "viral_pneumonia"],
    "brain": ["glioma", "meningioma", "no_tumor", "pituitary"],
}
DESCRIPTIONS = {
    "router": "Stage 1: decides whether an image is a chest X-ray, a brain MRI or neither (refused).",
    "chest": "Stage 2 for chest X-rays (paediatric AP, Kermany et al. 2018): normal, bacterial or viral pneumonia.",
    "brain": "Stage 2 for brain MRI slices (Nickparvar 2021): glioma, meningioma, no tumour, pituitary tumour.",
}
PREPROCESSING = "greyscale, bilinear resize to the input size, x/255, (x-0.5)/0.5"
DEFAULTS: dict[str, dict[str, Any]] = {
    "router": {
        "epochs": 2,
        "img_size": 96,
        "batch_size": 32,
        "lr": 1e-3,
        "positives_per_class": 3000,
        # Synthetic negatives (photos, documents, screenshots, noise, tiny crops: negatives.py) ...
        "negatives": 1500,
        # ... beside every real image of other modalities (DIR/other_modalities/train/<kind>/),
        # each kind repeated up to this many draws so that small kinds are not drowned out.
        "min_per_kind": 200,
        # Kinds left out of training: the leave-one-kind-out estimate (benchmarks/router_loko.py).
        "exclude_kinds": "",
    },
    "chest": {
        "epochs": 6,
        "img_size": 160,
        "batch_size": 32,
        "lr": 1e-3,
        "selective_accuracy": 0.95,
        # At least this share of validation reads, the least decisive, is left indeterminate (see
        # selective_margin): a model that is already accurate enough everywhere still holds back
        # its closest calls, which is where misread and mishandled images land.
        "min_indeterminate": 0.02,
    },
    "brain": {
        "epochs": 8,
        "img_size": 160,
        "batch_size": 32,
        "lr": 1e-3,
        "selective_accuracy": 0.98,
        "min_indeterminate": 0.02,
        # Neighbouring slices sit side by side in train/: validation is drawn group by group.
        "val_grouping": "near_duplicates",
    },
}
PATIENT_ID = re.compile(r"(person\d+|IM-\d+)")
DEFAULT_PRETRAINED = Path(__file__).resolve().parents[4] / "shared" / "pretrained" / "tf_efficientnet_lite0.safetensors"


def fast_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX).

    bf16 autocast halves training time where it is native, and is ~10× *slower* where it is
    emulated (seen on an AVX2-only EPYC: 17.7 s against 1.2 s per batch), so it is on only where
    it pays.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str) -> torch.device:
    """``device`` option → torch device: ``auto`` is CUDA when a GPU is visible, else the CPU.

    The product never needs a GPU: every step runs on the CPU too, only slower.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in {"cpu", "cuda"}:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU")
    return torch.device(name)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def exact_fp32(device: torch.device) -> contextlib.AbstractContextManager:
    """Plain fp32 convolutions and matmuls on CUDA (no TF32), so that what finalize measures on a
    GPU is what CPU inference computes."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=False, allow_tf32=False)


# -- data ------------------------------------------------------------------------------------
def load_folder(
    folder: Path, labels: list[str], size: int, skip: set[str] | frozenset[str] = frozenset()
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All images of an ImageFolder split as uint8 (N, size, size), labels and file names; file
    names in ``skip`` (``Exclusions.names``) are left out."""
    xs, ys, names = [], [], []
    for index, label in enumerate(labels):
        class_dir = folder / label
        if not class_dir.is_dir():
            continue
        for path in sorted(p for p in class_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"}):
            if path.name in skip:
                continue
            with Image.open(path) as im:
                xs.append(np.asarray(im.convert("L").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8))
            ys.append(index)
            names.append(path.name)
    if not xs:
        raise ValueError(f"No images found under {folder} for labels {labels}")
    return np.stack(xs), np.array(ys), names


def manifest_hash(names: list[str], ys: np.ndarray, extra: str = "") -> str:
    return hashlib.sha256(("\n".join(f"{n},{y}" for n, y in zip(names, ys, strict=True)) + extra).encode()).hexdigest()


def add_extra_training(
    extra_dir: Path, labels: list[str], size: int, method: str, xtr: np.ndarray, ytr: np.ndarray, manifest: str
) -> tuple[np.ndarray, np.ndarray, str]:
    """Add ``extra_dir/train/<label>/*`` (the doctors' labelled cases, ``manage.py export_feedback``)
    to the training images only: validation, and so checkpoint choice, calibration and thresholds,
    stays carved from the base data, and ``extra_dir/test`` (held-out patients) is never read here.
    The data manifest hash covers both."""
    xe, ye, names = load_folder(extra_dir / "train", labels, size)
    return np.concatenate([xtr, preprocess(method, xe)]), np.concatenate([ytr, ye]), manifest_hash(names, ye, manifest)


def near_duplicate_groups(xs: np.ndarray, threshold: float = 0.95, block: int = 1024) -> np.ndarray:
    """A group id per image: images whose mean-removed 32×32 thumbnails correlate at ``threshold``
    or more (neighbouring slices of one scan, re-encoded copies) share a group, transitively.

    The brain set has no patient ids, and the dataset notes that neighbouring slices of one patient
    sit side by side in ``train/``; a validation set drawn image by image would hold slices whose
    neighbours were trained on, and flatter the model. Drawing it group by group keeps them apart.
    """
    n = len(xs)
    thumbs = F.interpolate(torch.from_numpy(xs).float().unsqueeze(1), size=(32, 32), mode="area").flatten(1)
    thumbs = thumbs - thumbs.mean(1, keepdim=True)
    thumbs = thumbs / thumbs.norm(dim=1, keepdim=True).clamp(min=1e-6)
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, n, block):
        corr = thumbs[start : start + block] @ thumbs.T
        rows, cols = torch.nonzero(corr >= threshold, as_tuple=True)
        for i, j in zip((rows + start).tolist(), cols.tolist(), strict=True):
            if i < j:
                ri, rj = root(i), root(j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    return np.array([root(i) for i in range(n)])


def validation_mask(
    task: str,
    names: list[str],
    ys: np.ndarray,
    fraction: float,
    seed: int,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Which training images form the validation set.

    By patient for chest X-rays (the id is in the file name); by ``groups`` when given (near-
    duplicate groups for brain MRI, see ``near_duplicate_groups``), stratified by each group's
    majority label; otherwise image by image, stratified.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(ys), bool)
    if task == "chest":
        ids = [m.group(1) if (m := PATIENT_ID.search(n)) else n for n in names]
        patients = sorted(set(ids))
        rng.shuffle(patients)
        chosen = set(patients[: max(1, int(fraction * len(patients)))])
        return np.array([p in chosen for p in ids])
    if groups is not None:
        members: dict[int, list[int]] = {}
        for i, g in enumerate(groups.tolist()):
            members.setdefault(g, []).append(i)
        by_label: dict[int, list[int]] = {}
        for g, idx in members.items():
            by_label.setdefault(int(np.bincount(ys[idx]).argmax()), []).append(g)
        for label, group_ids in sorted(by_label.items()):
            rng.shuffle(group_ids)
            want, taken = fraction * int((ys == label).sum()), 0
            for g in group_ids:
                if taken >= want:
                    break
                mask[members[g]] = True
                taken += len(members[g])
        return mask
    for c in np.unique(ys):
        rows = np.where(ys == c)[0]
        rng.shuffle(rows)
        mask[rows[: max(1, int(fraction * len(rows)))]] = True
    return mask


def names_digest(names: list[str]) -> str:
    """SHA-256 of a set of file names (sorted, one per line): which images a validation set holds."""
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def carve_validation(
    task: str, xs: np.ndarray, names: list[str], ys: np.ndarray, cfg: dict[str, Any]
) -> tuple[np.ndarray, str]:
    """The validation mask the trainer uses for ``cfg``, and how it was drawn, in words.

    ``validation_names`` (a text file, one training file name per line) fixes the set outright: the
    near-duplicate grouping depends on the pixels, so the same carving drawn from a resized or
    re-encoded copy of ``train/`` would differ, and a model trained on such a copy must still be
    validated, calibrated and compared on exactly the images it did not train on. Otherwise the
    carving follows ``val_fraction``, ``seed`` and ``val_grouping``; benchmarks/selection.py carves
    the same way.
    """
    if cfg.get("validation_names"):
        listed = Path(cfg["validation_names"])
        wanted = {line.strip() for line in listed.read_text().splitlines() if line.strip()}
        unknown = wanted - set(names)
        if unknown:
            raise ValueError(f"{len(unknown)} names in {listed} are not training images, e.g. {min(unknown)}")
        mask = np.array([n in wanted for n in names])
        return mask, f"listed in {listed.name} ({len(wanted)} images, names sha256 {names_digest(list(wanted))[:16]})"
    grouping = cfg.get("val_grouping", DEFAULTS[task].get("val_grouping", "none"))
    if grouping not in {"none", "near_duplicates"}:
        raise ValueError("val_grouping must be 'none' or 'near_duplicates'")
    groups = near_duplicate_groups(xs) if grouping == "near_duplicates" and task != "chest" else None
    mask = validation_mask(task, names, ys, float(cfg["val_fraction"]), int(cfg["seed"]), groups)
    if task == "chest":
        return mask, "by patient"
    return mask, "by near-duplicate group (corr ≥ 0.95), stratified" if groups is not None else "stratified"


def make_augment(size: int, flip: bool, scale_min: float = 0.75) -> Callable[[torch.Tensor], torch.Tensor]:
    from torchvision.transforms import v2

    ops = [
        v2.RandomResizedCrop(size, scale=(scale_min, 1.0), ratio=(0.9, 1.1), antialias=True),
        v2.RandomAffine(degrees=10, translate=(0.04, 0.04)),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
    ]
    if flip:
        ops.append(v2.RandomHorizontalFlip())
    return v2.Compose(ops)


def appearance(t: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Random appearance changes of a float batch (N, 1, H, W) in [0, 1], one draw per image.

    What differs between hospitals more than anatomy does: exposure curve (gamma), detector noise,
    sharpness (blur) and contrast inversion of the window. ``strength`` 0 turns it off.
    """
    if strength <= 0:
        return t
    n, device = t.shape[0], t.device
    gamma = torch.exp(torch.empty(n, 1, 1, 1, device=device).uniform_(-0.4, 0.4) * strength)
    t = t.clamp(0, 1) ** gamma
    blur = torch.rand(n, device=device) < 0.25 * strength
    if blur.any():
        from torchvision.transforms.v2 import functional as TF

        sigma = float(torch.empty(1).uniform_(0.5, 1.5))
        t[blur] = TF.gaussian_blur(t[blur], kernel_size=[5, 5], sigma=[sigma, sigma]).to(t.dtype)
    noisy = (torch.rand(n, 1, 1, 1, device=device) < 0.3 * strength).float()
    t = t + noisy * torch.randn_like(t) * torch.empty(n, 1, 1, 1, device=device).uniform_(0.0, 0.05)
    return t.clamp(0, 1)


def batched_augment(t: torch.Tensor, flip: bool, scale_min: float = 0.75) -> torch.Tensor:
    """``make_augment`` for a whole float batch (N, 1, S, S) in [0, 1] at once, on its own device.

    One affine resampling per image does the random resized crop (area ``scale_min``..1, aspect
    0.9..1.1), the ±10° rotation with ±4 % shift and the horizontal flip; then brightness and
    contrast jitter (±20 %). Used where training runs on a GPU, where a Python loop over images
    would leave it idle; the CPU keeps torchvision's per-image transforms.
    """
    n, device = t.shape[0], t.device

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.empty(n, device=device).uniform_(lo, hi)

    area, ratio = uniform(scale_min, 1.0), uniform(math.log(0.9), math.log(1.1)).exp()
    w, h = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    cx, cy = uniform(-1.0, 1.0) * (1 - w), uniform(-1.0, 1.0) * (1 - h)
    angle = uniform(-10.0, 10.0) * (math.pi / 180)
    tx, ty = uniform(-0.08, 0.08), uniform(-0.08, 0.08)  # ±4 % of the side, in [-1, 1] coordinates
    mirror = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0) if flip else torch.ones(n, device=device)
    cos, sin = angle.cos(), angle.sin()
    # output point p → source point: crop ∘ inverse rotation ∘ (flip p − shift)
    crop_rotate = torch.stack([w * cos, w * sin, h * -sin, h * cos], 1).view(n, 2, 2)
    a = crop_rotate * torch.stack([mirror, torch.ones_like(mirror)], 1).view(n, 1, 2)
    b = torch.stack([cx, cy], 1).unsqueeze(2) - crop_rotate @ torch.stack([tx, ty], 1).unsqueeze(2)
    grid = F.affine_grid(torch.cat([a, b], 2), list(t.shape), align_corners=False)
    t = F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    t = (t * uniform(0.8, 1.2).view(n, 1, 1, 1)).clamp(0, 1)
    mean = t.mean(dim=(1, 2, 3), keepdim=True)
    return ((t - mean) * uniform(0.8, 1.2).view(n, 1, 1, 1) + mean).clamp(0, 1)


def device_batch_input(
    batch: torch.Tensor, size: int, flip: bool, scale_min: float, appearance_strength: float
) -> torch.Tensor:
    """``batch_input`` with augmentation for uint8 images (N, S, S) already on the training device."""
    t = appearance(batched_augment(batch.unsqueeze(1).float() / 255.0, flip, scale_min), appearance_strength)
    if t.shape[-1] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return ((t - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)


def batch_input(
    batch: np.ndarray, size: int, augment: Callable | None = None, appearance_strength: float = 1.0
) -> torch.Tensor:
    t = torch.from_numpy(batch).unsqueeze(1)
    if augment is not None:
        t = torch.stack([augment(x) for x in t])
    t = t.float() / 255.0
    if augment is not None:
        t = appearance(t, appearance_strength)
    if t.shape[-1] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return ((t - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict_logits(model: torch.nn.Module, xs: np.ndarray, size: int, bf16: bool = True) -> torch.Tensor:
    """Logits (on the CPU) of uint8 images (N, S, S), on the model's device."""
    model.eval()
    device = model_device(model)
    out = []
    for i in range(0, len(xs), 64):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out.append(model(batch_input(xs[i : i + 64], size).to(device)).float().cpu())
    return torch.cat(out)


def fit_temperature(logits: torch.Tensor, ys: np.ndarray) -> float:
    """Temperature scaling (Guo et al. 2017) on validation logits."""
    target = torch.from_numpy(np.asarray(ys)).long()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), target)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def router_threshold(probs: np.ndarray, ys: np.ndarray, max_refused: float = 0.002) -> float:
    """The highest confidence threshold that refuses at most ``max_refused`` of real validation cases."""
    real = ys < 2
    pred = probs.argmax(1)
    conf = np.where(pred[real] == ys[real], probs[real].max(1), 0.0)
    if not len(conf):
        return 0.5
    k = int(np.floor(max_refused * len(conf)))
    return float(min(0.9, max(0.5, np.sort(conf)[k] - 1e-4)))


# -- training --------------------------------------------------------------------------------
#: Options every task accepts, beside its own ``DEFAULTS``.
COMMON_OPTIONS = frozenset(
    {
        "seed",
        "threads",
        "val_fraction",
        "patience",
        "bf16",
        "preprocessing",
        "label_smoothing",
        "appearance",
        "ood_false_refusal",
        "from_artifact",
        "val_grouping",
        "pretrained",
        "version",
        "device",
        "validation_names",
        "log",
        "extra_data",
        "exclusions",
    }
)


def check_options(task: str, config: dict[str, Any]) -> None:
    """Raise ``TypeError`` naming every option ``train(task, ...)`` does not know."""
    if task not in TASK_LABELS:
        raise ValueError(f"task must be one of {sorted(TASK_LABELS)}")
    unknown = set(config) - COMMON_OPTIONS - set(DEFAULTS[task])
    if unknown:
        raise TypeError(f"unknown training option(s): {', '.join(sorted(unknown))}")


def train(task: str, data_dir: str | Path, out_dir: str | Path, **config: Any) -> Path:
    """Train ``task`` on ``data_dir`` and write a versioned artifact under ``out_dir``. Returns its folder."""
    if task not in TASK_LABELS:
        raise ValueError(f"task must be one of {sorted(TASK_LABELS)}")
    cfg = {
        **DEFAULTS[task],
        "seed": 0,
        "threads": 2,
        "val_fraction": 0.12,
        "patience": 3,
        "device": "auto",
        "preprocessing": "none",
        "label_smoothing": 0.0,
        "appearance": 1.0,
        "ood_false_refusal": 0.004,
        "pretrained": str(DEFAULT_PRETRAINED) if DEFAULT_PRETRAINED.exists() else None,
        "exclusions": str(DEFAULT_EXCLUSIONS) if DEFAULT_EXCLUSIONS.exists() else "",
        **config,
    }
    check_options(task, cfg)
    exclusions = Exclusions.load(cfg["exclusions"])  # a bad list fails before any work
    device = resolve_device(str(cfg["device"]))
    cfg["device"] = device.type
    if cfg.get("validation_names"):  # recorded in the card as given
        cfg["validation_names"] = str(cfg["validation_names"])
    if "bf16" not in cfg:  # a GPU computes bf16 natively; a CPU only where fast_bf16() says so
        cfg["bf16"] = device.type == "cuda" or fast_bf16()
    torch.set_num_threads(int(cfg["threads"]))
    log = cfg.get("log") or print
    data_dir, size, labels = Path(data_dir), int(cfg["img_size"]), TASK_LABELS[task]
    started = time.time()

    method = str(cfg["preprocessing"])
    preprocess(method, np.zeros((1, 8, 8), np.uint8))  # unknown names fail before any work
    validation = "stratified"
    if task == "router":
        if method != "none":
            raise ValueError("the router reads images as they come; preprocessing is for specialists")
        if cfg.get("extra_data"):
            raise ValueError("extra_data (doctors' labelled cases) is for the specialists, not the router")
        xtr, ytr, xva, yva, manifest = _router_data(data_dir, size, cfg, exclusions)
        test = _router_test(data_dir, size, exclusions)
    else:
        skip = exclusions.names(SPECIALIST_DATASET[task])
        xs, ys, names = load_folder(data_dir / "train", labels, size, skip)
        manifest = manifest_hash(names, ys)
        xs = preprocess(method, xs)
        mask, validation = carve_validation(task, xs, names, ys, cfg)
        xtr, ytr, xva, yva = xs[~mask], ys[~mask], xs[mask], ys[mask]
        if cfg.get("extra_data"):
            xtr, ytr, manifest = add_extra_training(Path(cfg["extra_data"]), labels, size, method, xtr, ytr, manifest)
        test = None
        if (data_dir / "test").is_dir():
            xte, yte, _ = load_folder(data_dir / "test", labels, size, skip)
            test = (preprocess(method, xte), yte)
    log(f"{task}: train {len(ytr)}, validation {len(yva)}, input {size}px, preprocessing {method}")

    if cfg.get("from_artifact"):
        # Same weights, new version: calibration, thresholds and the feature-space check are fitted
        # again (on the same carving of train/ as its training used), nothing is trained.
        source = load_artifact(cfg["from_artifact"])
        if (source.task, source.input_size, source.preprocessing) != (task, size, method):
            raise ValueError(
                f"{cfg['from_artifact']} is a {source.task} model at {source.input_size}px ({source.preprocessing}); "
                f"asked for {task} at {size}px ({method})"
            )
        model = source.model.to(device)
        training_info = {
            **source.card["training"],
            "version": cfg.get("version"),
            "weights_from": source.version,
            "checks_fitted": dt.date.today().isoformat(),
            "validation": validation,
            "selective_accuracy": cfg["selective_accuracy"],
            "min_indeterminate": cfg["min_indeterminate"],
        }
        # The list this refit was validated on, if any (not the source's, which may live elsewhere).
        training_info.pop("validation_names", None)
        if cfg.get("validation_names"):
            training_info["validation_names"] = cfg["validation_names"]
    else:
        model, class_weights, history = fit(task, xtr, ytr, xva, yva, cfg, log)
        training_info = {k: v for k, v in cfg.items() if k not in {"log", "pretrained"}}
        training_info["exclusions"] = exclusions.summary() if exclusions.rows else "none"
        training_info.update(
            arch=ARCH,
            optimiser="AdamW + OneCycle",
            class_weights=[round(float(w), 3) for w in class_weights],
            validation=validation,
            history=history,
            seconds=round(time.time() - started),
            pretrained="ImageNet (tf_efficientnet_lite0)" if cfg["pretrained"] else "none",
        )
        if device.type == "cuda":
            training_info["accelerator"] = torch.cuda.get_device_name(device)
    return finalize(
        task,
        model,
        (xtr, ytr),
        (xva, yva),
        test,
        Path(out_dir),
        size,
        manifest,
        training_info,
        cfg,
        data_dir,
        version=cfg.get("version"),
        preprocessing=method,
    )


def fit(
    task: str,
    xtr: np.ndarray,
    ytr: np.ndarray,
    xva: np.ndarray,
    yva: np.ndarray,
    cfg: dict[str, Any],
    log: Callable[[str], Any] = print,
) -> tuple[EfficientNet, torch.Tensor, list[dict[str, Any]]]:
    """The training loop: class-weighted loss, augmentation, early stopping on validation macro-F1.

    Returns the best model (by validation macro-F1), the class weights and the per-epoch history.
    """
    labels, size = TASK_LABELS[task], int(cfg["img_size"])
    device = resolve_device(str(cfg.get("device", "auto")))
    torch.manual_seed(int(cfg["seed"]))
    # torch accepts a device and a memory format in one call; its type overloads do not.
    model = build_model(len(labels), cfg["pretrained"]).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    flip, scale_min = task != "chest", 0.6 if task == "router" else 0.75
    augment = make_augment(size, flip=flip, scale_min=scale_min)
    on_gpu = device.type == "cuda"
    if on_gpu:  # the training set lives on the GPU as uint8 and is augmented there, batch by batch
        torch.backends.cudnn.benchmark = True
        xtr_device = torch.from_numpy(xtr).to(device)
    counts = np.bincount(ytr, minlength=len(labels)).clip(min=1)
    class_weights = torch.tensor(len(ytr) / (len(labels) * counts), dtype=torch.float32).to(device)
    bs = int(cfg["batch_size"])
    steps_per_epoch = max(1, len(ytr) // bs)
    opt = torch.optim.AdamW(model.parameters(), lr=float(cfg["lr"]), weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=float(cfg["lr"]), total_steps=int(cfg["epochs"]) * steps_per_epoch, pct_start=0.15
    )
    best_f1, best_state, stale, history = -1.0, None, 0, []
    for epoch in range(int(cfg["epochs"])):
        model.train()
        order = np.random.default_rng(int(cfg["seed"]) + epoch).permutation(len(ytr))
        t, running = time.time(), torch.zeros((), device=device)
        for step in range(steps_per_epoch):
            idx = order[step * bs : (step + 1) * bs]
            if on_gpu:
                inputs = device_batch_input(
                    xtr_device[torch.from_numpy(idx).to(device)], size, flip, scale_min, float(cfg["appearance"])
                )
            else:
                inputs = batch_input(xtr[idx], size, augment, float(cfg["appearance"]))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(cfg["bf16"])):
                logits = model(inputs).float()
            loss = F.cross_entropy(
                logits,
                torch.from_numpy(ytr[idx]).long().to(device),
                weight=class_weights,
                label_smoothing=float(cfg.get("label_smoothing", 0.0)),
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running += loss.detach()
        total = float(running)
        val = classification_metrics(
            yva, torch.softmax(predict_logits(model, xva, size, cfg["bf16"]), 1).numpy(), labels
        )
        history.append(
            {
                "epoch": epoch + 1,
                "loss": round(total / steps_per_epoch, 4),
                "val_accuracy": val["accuracy"],
                "val_macro_f1": val["macro_f1"],
            }
        )
        log(
            f"epoch {epoch + 1}: loss {total / steps_per_epoch:.4f}, val acc {val['accuracy']:.4f}, "
            f"macro-F1 {val['macro_f1']:.4f} ({time.time() - t:.0f}s)"
        )
        if val["macro_f1"] > best_f1:
            best_f1, stale = val["macro_f1"], 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if stale >= int(cfg["patience"]):
                log("early stop")
                break
    model.load_state_dict(best_state)
    return model, class_weights, history


def finalize(
    task: str,
    model: EfficientNet,
    train_set: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray] | None,
    out_dir: Path,
    size: int,
    manifest: str,
    training_info: dict[str, Any],
    cfg: dict[str, Any],
    data_dir: Path,
    version: str | None = None,
    preprocessing: str = "none",
) -> Path:
    """Write the fp16 artifact, then calibrate, fit the feature-space checks and evaluate on *that*
    file (what ships, not the fp32 model in memory): temperature, thresholds and the out-of-
    distribution check from train/validation only; ``test/`` is read once, at the end."""
    from safetensors.torch import save_file

    labels = TASK_LABELS[task]
    version = version or next_version(out_dir, task)
    folder = out_dir / version
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        k: v.detach().half().cpu().contiguous()
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    save_file(state, str(folder / WEIGHTS_FILE))
    # Measured on the file as saved, in fp32, on the device training used (a GPU without TF32).
    shipped = _build_from_weights(folder / WEIGHTS_FILE, labels).to(model_device(model))
    xva, yva = validation
    val_logits, val_emb = logits_and_embeddings(shipped, xva, size)
    temperature = fit_temperature(val_logits, yva)
    val_probs = torch.softmax(val_logits / temperature, 1).numpy()
    ood_card: dict[str, Any] = {}
    if task == "router":
        thresholds = {"min_confidence": router_threshold(val_probs, yva)}
        describer = KindDescriber.fit(_kind_embeddings(shipped, data_dir, size, cfg))
        ood.save(folder / ood.OOD_FILE, describer.tensors())
        ood_card = {"describer": "cosine to per-kind centroids of the router embedding", "kinds": describer.kinds}
    else:
        thresholds = {
            "min_margin": selective_margin(
                val_probs, yva, float(cfg["selective_accuracy"]), float(cfg["min_indeterminate"])
            )
        }
        xtr, ytr = train_set
        check = fit_feature_check(shipped, xtr, ytr, size, task)
        false_refusal = float(cfg["ood_false_refusal"])
        threshold = check.calibrate(val_emb, false_refusal)
        ood.save(folder / ood.OOD_FILE, check.tensors())
        ood_card = {
            "method": "class-conditional Mahalanobis, tied covariance shrunk 5%, on the penultimate embedding",
            "fitted_on": "train/ (clean + one augmented copy), validation carved from train/ for the threshold",
            "threshold": round(threshold, 4),
            "false_refusal_target": false_refusal,
        }
    ood_card["sha256"] = file_sha256(folder / ood.OOD_FILE)
    card: dict[str, Any] = {
        "task": task,
        "version": version,
        "arch": ARCH,
        "labels": labels,
        "input_size": size,
        "in_chans": 1,
        "description": DESCRIPTIONS[task],
        "preprocessing": "; ".join(filter(None, [PREPROCESSING, PREPROCESS_DESCRIPTIONS[preprocessing]])),
        "preprocessing_method": preprocessing,
        "temperature": round(temperature, 4),
        "thresholds": thresholds,
        "ood": ood_card,
        "weights_sha256": file_sha256(folder / WEIGHTS_FILE),
        "data_manifest_sha256": manifest,
        "training": training_info,
        "validation_metrics": _brief(classification_metrics(yva, val_probs, labels)),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    if test is not None:
        test_logits, _ = logits_and_embeddings(shipped, test[0], size)
        test_probs = torch.softmax(test_logits / temperature, 1).numpy()
        card["test_metrics"] = classification_metrics(test[1], test_probs, labels)
        card["extra_test_metrics"] = extra_metrics(task, test[1], test_probs, thresholds)
    write_card(folder, card)
    return folder


@torch.no_grad()
def logits_and_embeddings(
    model: EfficientNet, xs: np.ndarray, size: int, augment: Callable | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 logits and penultimate embeddings (on the CPU) of uint8 images (N, S, S), as inference
    computes them, on the model's device."""
    model.eval()
    device = model_device(model)
    logits, embeddings = [], []
    with exact_fp32(device):
        for i in range(0, len(xs), 64):
            features = model.forward_features(batch_input(xs[i : i + 64], size, augment).to(device))
            logits.append(model.forward_head(features).float().cpu())
            embeddings.append(ood.embed(features).cpu())
    return torch.cat(logits), torch.cat(embeddings)


def fit_feature_check(model: EfficientNet, xtr: np.ndarray, ytr: np.ndarray, size: int, task: str):
    """The specialist's Mahalanobis check, fitted on its training images: each clean and once
    augmented (geometry and appearance, as in training), so that ordinary differences between
    hospitals in exposure, noise and framing stay inside the fitted region."""
    torch.manual_seed(1)
    _, clean = logits_and_embeddings(model, xtr, size)
    _, augmented = logits_and_embeddings(model, xtr, size, make_augment(size, flip=task != "chest"))
    return ood.MahalanobisCheck.fit(torch.cat([clean, augmented]), np.concatenate([ytr, ytr]))


def top_two_margin(probs: np.ndarray) -> np.ndarray:
    """(N,) how far each row's top probability leads its second (what ``min_margin`` is compared to)."""
    top2 = np.sort(probs, 1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def selective_margin(
    probs: np.ndarray, ys: np.ndarray, target_accuracy: float, min_indeterminate: float = 0.0
) -> float:
    """The smallest margin (top probability minus the second) at which the reads the model commits
    to reach ``target_accuracy`` on validation; below it a read is "indeterminate".

    The margin is at least the ``min_indeterminate`` quantile of validation margins, so that share
    of reads, the least decisive, stays indeterminate even when every margin already reaches the
    target: on images mishandled before upload (contrast inverted, rotated, blurred, tiled), the
    specialist's wrong answers cluster at small margins (``benchmarks/perturbations.py``).
    """
    margin = top_two_margin(probs)
    correct = probs.argmax(1) == ys
    floor = float(np.quantile(margin, min_indeterminate)) if min_indeterminate > 0 else 0.0
    for m in np.unique(np.concatenate([[0.0], margin])):
        kept = margin >= m
        if kept.sum() >= max(10, 0.2 * len(ys)) and correct[kept].mean() >= target_accuracy:
            return round(max(float(m), floor), 4)
    return round(max(float(np.quantile(margin, 0.8)), floor), 4)


def risk_coverage(probs: np.ndarray, ys: np.ndarray, margins: list[float]) -> list[dict[str, float]]:
    """Coverage (share of reads committed to) and their accuracy, per margin threshold."""
    margin = top_two_margin(probs)
    correct = probs.argmax(1) == ys
    rows = []
    for m in margins:
        kept = margin >= m
        rows.append(
            {
                "min_margin": round(float(m), 4),
                "coverage": round(float(kept.mean()), 4),
                "accuracy": round(float(correct[kept].mean()), 4) if kept.any() else float("nan"),
            }
        )
    return rows


def _kind_embeddings(model: EfficientNet, data_dir: Path, size: int, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Router embeddings of each negative kind it trained on (real modalities and synthetic)."""
    from .negatives import generate

    exclude = {k for k in str(cfg.get("exclude_kinds") or "").split(",") if k}
    images = other_modality_images(data_dir, "train", size, exclude)
    for kind, xs in relabelled_images(data_dir, "train", size, Exclusions.load(cfg.get("exclusions")), exclude).items():
        images[kind] = np.concatenate([images[kind], xs]) if kind in images else xs
    synthetic, kinds = generate(600, size, seed=int(cfg["seed"]) + 3, heldout=False)
    for kind in ("photo", "document", "screenshot"):
        chosen = [i for i, k in enumerate(kinds) if k == kind]
        if chosen:
            images[kind] = synthetic[chosen]
    return {kind: logits_and_embeddings(model, xs, size)[1] for kind, xs in images.items()}


def extra_metrics(task: str, ys: np.ndarray, probs: np.ndarray, thresholds: dict[str, float]) -> dict[str, float]:
    if task == "chest":  # pneumonia (bacterial or viral) vs normal
        return {"pneumonia_vs_normal_accuracy": round(float(((probs.argmax(1) > 0) == (ys > 0)).mean()), 4)}
    if task == "router":
        real = ys < 2
        conf_ok = probs.max(1) >= thresholds.get("min_confidence", 0.5)
        accepted_right = (probs.argmax(1) == ys) & conf_ok
        return {
            "real_cases_routed_correctly": round(float(accepted_right[real].mean()), 4),
            "real_cases_wrongly_refused": round(float((~accepted_right[real]).mean()), 4),
        }
    return {}


def _brief(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in ("n", "accuracy", "macro_f1", "ece")}


def next_version(out_dir: Path, task: str) -> str:
    stamp = dt.date.today().strftime("%Y.%m.%d")
    n = 1
    while (out_dir / f"{task}-{stamp}-{n}").exists():
        n += 1
    return f"{task}-{stamp}-{n}"


OTHER_MODALITIES = "other_modalities"


def other_modality_images(
    root: Path, split: str, size: int, exclude: AbstractSet[str] = frozenset()
) -> dict[str, np.ndarray]:
    """Real images of other modalities, ``root/other_modalities/<split>/<kind>/*``, per kind.

    Every one of them is a router negative ("unsupported"); the kinds are bookkeeping for the
    per-kind figures and for the refusal wording, never router classes.
    """
    folder = root / OTHER_MODALITIES / split
    if not folder.is_dir():
        raise ValueError(f"router training needs real negatives in {folder}")
    kinds: dict[str, np.ndarray] = {}
    for kind_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        if kind_dir.name in exclude:
            continue
        files = sorted(p for p in kind_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        if files:
            kinds[kind_dir.name] = np.stack([_load_gray(f, size) for f in files])
    return kinds


def _load_gray(path: Path, size: int) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("L").resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def _dataset_files(root: Path, sub: str, split: str) -> list[Path]:
    folder = root / sub / split
    return sorted(folder.rglob("*.jp*g")) + sorted(folder.rglob("*.png"))


def relabelled_images(
    root: Path, split: str, size: int, exclusions: Exclusions, exclude_kinds: set[str] | frozenset[str] = frozenset()
) -> dict[str, np.ndarray]:
    """The listed images of ``root/{chest_xray,brain_mri}/<split>``, per kind (``Exclusions``):
    real images of that kind that happen to sit in a positive folder."""
    found: dict[str, list[np.ndarray]] = {}
    for sub in SPECIALIST_DATASET.values():
        for path in _dataset_files(root, sub, split):
            kind = exclusions.kind(sub, path.name)
            if kind is not None and kind not in exclude_kinds:
                found.setdefault(kind, []).append(_load_gray(path, size))
    return {kind: np.stack(xs) for kind, xs in found.items()}


def _router_data(root: Path, size: int, cfg: dict[str, Any], exclusions: Exclusions | None = None):
    """Router training and validation sets.

    Positives: ``positives_per_class`` chest X-rays and brain MRIs drawn from each ``train/``, a
    sixth of them kept for validation. Negatives: every image of ``other_modalities/train`` (small
    kinds repeated up to ``min_per_kind``; augmentation makes the repeats differ) plus synthetic
    ones; validation negatives are ``other_modalities/val`` plus fresh synthetic ones.

    Images on the ``exclusions`` list (e.g. head CT slices inside ``brain_mri/train``) are negatives:
    the draw and the validation carving are made as if they were positives, so that the validation
    set is the same images with or without the list, and then the listed ones are relabelled
    unsupported where they fell (or dropped, when their kind is in ``exclude_kinds``); the listed
    images the draw did not pick are added to the training negatives.
    """
    from .negatives import generate

    exclusions = exclusions or Exclusions([])
    rng = np.random.default_rng(int(cfg["seed"]))
    per_class = int(cfg["positives_per_class"])
    exclude = {k for k in str(cfg.get("exclude_kinds") or "").split(",") if k}
    parts, names, listed_kinds, listed_unpicked = [], [], [], []
    for sub in ("chest_xray", "brain_mri"):
        files = _dataset_files(root, sub, "train")
        if not files:
            raise ValueError(f"router training needs {root / sub / 'train'}")
        pick = rng.choice(len(files), size=min(per_class, len(files)), replace=False)
        parts.append(np.stack([_load_gray(files[i], size) for i in pick]))
        names += [files[i].name for i in pick]
        listed_kinds += [exclusions.kind(sub, files[i].name) for i in pick]
        picked = set(pick.tolist())
        listed_unpicked += [
            f for j, f in enumerate(files) if j not in picked and exclusions.kind(sub, f.name) not in {None, *exclude}
        ]
    pool = np.concatenate([parts[0][:200], parts[1][:200]])
    real_train = other_modality_images(root, "train", size, exclude)
    real_val = other_modality_images(root, "val", size, exclude)
    min_per_kind = int(cfg["min_per_kind"])
    real = [
        images[rng.choice(len(images), min_per_kind, replace=True)] if len(images) < min_per_kind else images
        for images in real_train.values()
    ]
    negs, _ = generate(int(cfg["negatives"]), size, seed=int(cfg["seed"]) + 1, heldout=False, real_pool=pool)
    vnegs, _ = generate(
        max(50, int(cfg["negatives"]) // 6), size, seed=int(cfg["seed"]) + 2, heldout=False, real_pool=pool
    )
    negatives = np.concatenate([*real, negs])
    xs = np.concatenate([parts[0], parts[1], negatives])
    ys = np.array([0] * len(parts[0]) + [1] * len(parts[1]) + [2] * len(negatives))
    val = np.zeros(len(ys), bool)
    for c in (0, 1):
        idx = np.where(ys == c)[0]
        val[rng.choice(idx, max(1, len(idx) // 6), replace=False)] = True
    # Listed images: negatives where the draw put them (validation too), or out for a left-out kind.
    keep = np.ones(len(ys), bool)
    for i, kind in enumerate(listed_kinds):
        if kind is not None:
            ys[i] = 2
            keep[i] = kind not in exclude
    extra = (
        f"|negatives seed {int(cfg['seed']) + 1} n {len(negs)} size {size}"
        f"|other modalities {','.join(f'{k}:{len(v)}' for k, v in real_train.items())}"
    )
    if exclusions.rows:
        extra += f"|exclusions {exclusions.sha256}"
    manifest = manifest_hash(names, ys[: len(names)], extra)
    if listed_unpicked:
        xs = np.concatenate([xs, np.stack([_load_gray(f, size) for f in listed_unpicked])])
        ys = np.concatenate([ys, np.full(len(listed_unpicked), 2)])
        keep = np.concatenate([keep, np.ones(len(listed_unpicked), bool)])
        val = np.concatenate([val, np.zeros(len(listed_unpicked), bool)])
    xval_neg = np.concatenate([*real_val.values(), vnegs])
    return (
        xs[~val & keep],
        ys[~val & keep],
        np.concatenate([xs[val & keep], xval_neg]),
        np.concatenate([ys[val & keep], np.full(len(xval_neg), 2)]),
        manifest,
    )


def _router_test(root: Path, size: int, exclusions: Exclusions | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Router test set: both official test splits + held-out negatives (sources never trained on).
    Images on the ``exclusions`` list count as negatives ("unsupported")."""
    from .negatives import generate

    exclusions = exclusions or Exclusions([])
    parts, ys = [], []
    for index, sub in enumerate(("chest_xray", "brain_mri")):
        if not (root / sub / "test").is_dir():
            return None
        files = _dataset_files(root, sub, "test")
        parts.append(np.stack([_load_gray(f, size) for f in files]))
        ys += [2 if exclusions.kind(sub, f.name) is not None else index for f in files]
    negs, _ = generate(600, size, seed=999, heldout=True)
    return np.concatenate([*parts, negs]), np.array(ys + [2] * len(negs))


# -- evaluation ------------------------------------------------------------------------------
def evaluate(
    artifact_dir: str | Path, data_dir: str | Path, exclusions: str | Path | None = DEFAULT_EXCLUSIONS
) -> dict[str, Any]:
    """Metrics of an artifact on an ImageFolder directory (``DIR/<label>/*`` or ``DIR/test/<label>/*``),
    the images on the ``exclusions`` list counted as the trainer counts them (router negatives, left
    out for a specialist)."""
    art = load_artifact(artifact_dir)
    data_dir = Path(data_dir)
    listed = Exclusions.load(exclusions)
    if art.task == "router":
        test = _router_test(data_dir, art.input_size, listed)
        if test is None:
            raise ValueError(f"{data_dir} needs chest_xray/test and brain_mri/test")
        xs, ys = test
    else:
        folder = data_dir / "test" if (data_dir / "test").is_dir() else data_dir
        xs, ys, _ = load_folder(folder, art.labels, art.input_size, listed.names(SPECIALIST_DATASET[art.task]))
        xs = preprocess(art.preprocessing, xs)
    logits = predict_logits(art.model, xs, art.input_size, bf16=False)
    probs = torch.softmax(logits / art.temperature, 1).numpy()
    metrics = classification_metrics(ys, probs, art.labels)
    metrics["extra"] = extra_metrics(art.task, ys, probs, art.thresholds)
    metrics.pop("reliability", None)
    return metrics


def to_input(pixels: np.ndarray, size: int) -> torch.Tensor:  # re-exported for tests and benchmarks
    return to_model_input(pixels, size)


__all__ = [
    "TASK_LABELS",
    "train",
    "evaluate",
    "finalize",
    "load_folder",
    "validation_mask",
    "near_duplicate_groups",
    "json",
]
