"""Model artifacts: a folder with ``model.safetensors`` (fp16 weights) and ``card.json``.

The card is the registry entry of the weights (torchxrayvision-style): labels, input size,
preprocessing, thresholds, temperature, training config, data hash and test metrics. Every model
is a timm ``tf_efficientnet_lite0`` with a 1-channel stem, so all stages share one interface.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet

from .ood import OOD_FILE, KindDescriber, MahalanobisCheck, load_check, load_describer

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
ARCH = "tf_efficientnet_lite0"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_model(num_classes: int, pretrained_file: str | None = None) -> EfficientNet:
    """The network every stage uses. ``pretrained_file``: ImageNet weights to start from."""
    import timm
    from timm.models.efficientnet import EfficientNet

    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": 1}
    if pretrained_file:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_file)})
    model = timm.create_model(ARCH, **kwargs)
    assert isinstance(model, EfficientNet)  # ARCH's class: its forward_features and forward_head
    return model


@dataclass
class Artifact:
    """Weights plus their card.

    ``model`` (eval mode, float32, channels-last) is built from the weights on first use. A
    pipeline that runs a cached ONNX export never needs it, and not building it keeps timm and
    three PyTorch models out of the worker's memory (about 250 MB of RSS on the team's machines);
    ``load_artifact(path, lazy=False)`` builds it at once, which also checks the weights.
    """

    task: str
    version: str
    sha256: str
    labels: list[str]
    input_size: int
    temperature: float
    thresholds: dict[str, float]
    card: dict[str, Any]
    path: Path
    extras: dict[str, Any] = field(default_factory=dict)
    #: A specialist's feature-space check (ood.py), when its card has one.
    feature_check: MahalanobisCheck | None = None
    #: The router's description of what an unsupported image resembles, when its card has one.
    describer: KindDescriber | None = None
    _model: EfficientNet | None = field(default=None, repr=False)
    _head_weight: torch.Tensor | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def model(self) -> EfficientNet:
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = _build_from_weights(self.path / WEIGHTS_FILE, self.labels)
        return self._model

    @property
    def model_loaded(self) -> bool:
        return self._model is not None

    @property
    def classifier_weight(self) -> torch.Tensor:
        """(classes, features) weights of the linear head: Grad-CAM's channel weights (cam.py)."""
        if self._model is not None:
            classifier = self._model.get_classifier()
            assert isinstance(classifier, torch.nn.Linear)
            return classifier.weight
        if self._head_weight is None:
            from safetensors import safe_open

            with safe_open(str(self.path / WEIGHTS_FILE), framework="pt") as weights:
                self._head_weight = weights.get_tensor("classifier.weight").float()
        return self._head_weight

    @property
    def preprocessing(self) -> str:
        """The intensity preprocessing the weights were trained with (``preprocess.METHODS``)."""
        return str(self.card.get("preprocessing_method") or "none")

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]


def _build_from_weights(weights: Path, labels: list[str]) -> EfficientNet:
    from safetensors.torch import load_file

    model = build_model(len(labels))
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("num_batches_tracked")]:
        raise ValueError(f"{weights}: weights do not match {ARCH} with {len(labels)} classes")
    model.eval().to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_artifact(path: str | Path, lazy: bool = False) -> Artifact:
    """The artifact in ``path``; with ``lazy``, its PyTorch model is only built when first used."""
    path = Path(path)
    card = json.loads((path / CARD_FILE).read_text())
    weights = path / WEIGHTS_FILE
    artifact = Artifact(
        task=card["task"],
        version=card["version"],
        sha256=file_sha256(weights),
        labels=list(card["labels"]),
        input_size=int(card["input_size"]),
        temperature=float(card.get("temperature") or 1.0),
        thresholds={k: float(v) for k, v in (card.get("thresholds") or {}).items()},
        card=card,
        path=path,
    )
    ood_card = card.get("ood") or {}
    if ood_card:
        ood_path = path / OOD_FILE
        if file_sha256(ood_path) != ood_card.get("sha256"):
            raise ValueError(f"{ood_path}: SHA-256 does not match its card")
        if artifact.task == "router":
            artifact.describer = load_describer(ood_path, list(ood_card["kinds"]))
        else:
            artifact.feature_check = load_check(ood_path, float(ood_card["threshold"]))
    if not lazy:
        artifact.model  # noqa: B018 - builds the model now, checking the weights
    return artifact


def find_artifacts(root: str | Path) -> dict[str, Path]:
    """The newest artifact folder per task under ``root/<task>/<version>/`` (by card version)."""
    newest: dict[str, tuple[str, Path]] = {}
    for card_path in sorted(Path(root).glob(f"*/*/{CARD_FILE}")):
        if not (card_path.parent / WEIGHTS_FILE).is_file():
            continue
        card = json.loads(card_path.read_text())
        task, version = card.get("task"), str(card.get("version", ""))
        if task and (task not in newest or version > newest[task][0]):
            newest[task] = (version, card_path.parent)
    return {task: p for task, (_, p) in newest.items()}
