"""Training is part of the product: a one-epoch run on a tiny generated ImageFolder writes a
loadable, versioned artifact with a model card (no ../shared data needed)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from apps.diagnosis.pipeline import TwoStagePipeline, load_artifact
from apps.diagnosis.pipeline.training import (
    TASK_LABELS,
    batched_augment,
    evaluate,
    near_duplicate_groups,
    resolve_device,
    train,
    validation_mask,
)


def _folder(root, labels, per_class, seed, name_fmt="img{i}_{label}.png"):
    rng = np.random.default_rng(seed)
    for c, label in enumerate(labels):
        d = root / label
        d.mkdir(parents=True)
        for i in range(per_class):
            base = np.full((48, 48), 40 + 60 * c, np.float32) + rng.normal(0, 12, (48, 48))
            Image.fromarray(base.clip(0, 255).astype("uint8")).save(d / name_fmt.format(i=i, label=label, c=c))


@pytest.fixture
def chest_folder(tmp_path):
    labels = TASK_LABELS["chest"]
    _folder(tmp_path / "data" / "train", labels, 8, 0, "person{i}{c}_x_{i}.png")
    _folder(tmp_path / "data" / "test", labels, 3, 1)
    return tmp_path / "data"


def test_one_epoch_training_writes_a_loadable_artifact_and_card(chest_folder, tmp_path):
    out = train(
        "chest",
        chest_folder,
        tmp_path / "weights",
        epochs=1,
        img_size=32,
        batch_size=4,
        pretrained=None,
        bf16=False,
        log=lambda *_: None,
    )
    assert (out / "model.safetensors").stat().st_size > 1_000_000
    card = json.loads((out / "card.json").read_text())
    assert card["task"] == "chest" and card["labels"] == TASK_LABELS["chest"]
    assert card["version"].startswith("chest-") and card["input_size"] == 32
    assert card["temperature"] > 0 and len(card["data_manifest_sha256"]) == 64
    test = card["test_metrics"]
    assert test["n"] == 9 and np.array(test["confusion_matrix"]).sum() == 9
    assert 0 <= test["ece"] <= 1 and set(test["per_class"]) == set(TASK_LABELS["chest"])
    assert "pneumonia_vs_normal_accuracy" in card["extra_test_metrics"]
    assert (out / "card.md").read_text().startswith("# Model card: chest")
    assert (out / "confusion.png").exists() and (out / "reliability.png").exists()

    artifact = load_artifact(out)
    assert artifact.sha256 == card["weights_sha256"] and artifact.labels == TASK_LABELS["chest"]
    metrics = evaluate(out, chest_folder)
    assert metrics["n"] == 9 and 0 <= metrics["accuracy"] <= 1


def test_second_training_gets_a_new_version(chest_folder, tmp_path):
    kwargs = dict(epochs=1, img_size=32, batch_size=4, pretrained=None, bf16=False, log=lambda *_: None)
    first = train("chest", chest_folder, tmp_path / "w", **kwargs)
    second = train("chest", chest_folder, tmp_path / "w", **kwargs)
    assert first != second and first.parent == second.parent


def test_unknown_training_option_is_refused(chest_folder, tmp_path):
    with pytest.raises(TypeError):
        train("chest", chest_folder, tmp_path / "w", epochs=1, learning_rate_typo=3)


def test_device_option_is_checked(chest_folder, tmp_path, monkeypatch):
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device must be"):
        train("chest", chest_folder, tmp_path / "w", epochs=1, device="gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ValueError, match="no CUDA GPU"):
        train("chest", chest_folder, tmp_path / "w", epochs=1, device="cuda")
    assert not (tmp_path / "w").exists()


def test_listed_validation_names_fix_the_validation_set(chest_folder, tmp_path):
    """A model trained on a re-encoded copy of train/ is validated on exactly the listed images."""
    chosen = ["person00_x_0.png", "person11_x_1.png", "person22_x_2.png"]
    listed = tmp_path / "validation.txt"
    listed.write_text("\n".join(chosen) + "\n")
    kwargs = dict(epochs=1, img_size=32, batch_size=4, pretrained=None, bf16=False, log=lambda *_: None)
    card = json.loads(
        (train("chest", chest_folder, tmp_path / "w", validation_names=listed, **kwargs) / "card.json").read_text()
    )
    assert card["validation_metrics"]["n"] == 3
    assert card["training"]["validation"].startswith("listed in validation.txt (3 images")
    listed.write_text("person00_x_0.png\nnot_in_train.png\n")
    with pytest.raises(ValueError, match="not training images"):
        train("chest", chest_folder, tmp_path / "w", validation_names=listed, **kwargs)


def test_a_refit_records_its_own_validation_list_and_margin_rule(chest_folder, tmp_path):
    """``from_artifact`` keeps the weights and fits the checks again: its card names the list it was
    validated on (not the source's) and the margin rule it used."""
    kwargs = dict(img_size=32, batch_size=4, pretrained=None, bf16=False, log=lambda *_: None)
    first_list, second_list = tmp_path / "first.txt", tmp_path / "second.txt"
    first_list.write_text("person00_x_0.png\nperson11_x_1.png\nperson22_x_2.png\n")
    second_list.write_text("person00_x_0.png\nperson11_x_1.png\n")
    source = train("chest", chest_folder, tmp_path / "w", epochs=1, validation_names=first_list, **kwargs)
    refit = train(
        "chest",
        chest_folder,
        tmp_path / "w",
        from_artifact=source,
        validation_names=second_list,
        min_indeterminate=0.5,
        **kwargs,
    )
    card = json.loads((refit / "card.json").read_text())
    source_card = json.loads((source / "card.json").read_text())
    assert card["weights_sha256"] == source_card["weights_sha256"]
    assert card["training"]["validation_names"] == str(second_list)
    assert card["training"]["min_indeterminate"] == 0.5 and card["validation_metrics"]["n"] == 2
    no_list = train("chest", chest_folder, tmp_path / "w", from_artifact=source, **kwargs)
    assert "validation_names" not in json.loads((no_list / "card.json").read_text())["training"]


def test_batched_augment_varies_each_image_and_keeps_the_range():
    """The GPU twin of the torchvision augmentation (runs on any device): one random geometry and
    contrast per image, values stay in [0, 1], the image is not wiped out."""
    torch.manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 48), torch.linspace(0, 1, 48), indexing="ij")
    batch = (0.2 + 0.6 * xx * yy).expand(16, 1, 48, 48).contiguous()
    out = batched_augment(batch, flip=True, scale_min=0.75)
    assert out.shape == batch.shape and out.dtype == torch.float32
    assert 0 <= float(out.min()) and float(out.max()) <= 1
    flat = out.flatten(1)
    assert float(torch.cdist(flat, flat).triu(1).max()) > 0 and (flat[1:] != flat[:1]).any(1).all()
    # most of each image still holds the picture (borders from rotation and shift are small)
    assert float((out > 0.05).float().mean()) > 0.85
    unflipped = batched_augment(batch, flip=False, scale_min=0.75).mean(0)
    assert torch.corrcoef(torch.stack([unflipped.flatten(), batch[0].flatten()]))[0, 1] > 0.8


def test_chest_validation_split_keeps_each_patient_on_one_side():
    names = [f"person{p}_bacteria_{i}.jpg" for p in range(40) for i in range(3)] + [
        f"IM-{p:04d}-0001.jpg" for p in range(40)
    ]
    ys = np.zeros(len(names), int)
    mask = validation_mask("chest", names, ys, 0.2, seed=0)
    by_patient = {}
    for name, is_val in zip(names, mask, strict=True):
        pid = name.split("_")[0] if name.startswith("person") else name[:7]
        by_patient.setdefault(pid, set()).add(bool(is_val))
    assert all(len(sides) == 1 for sides in by_patient.values())
    assert 0.1 < mask.mean() < 0.35


def test_near_duplicate_slices_are_grouped_and_kept_on_one_side_of_validation():
    """Neighbouring slices (a shifted, re-contrasted copy) share a group; unrelated images do not;
    a grouped validation split never puts one group on both sides."""
    rng = np.random.default_rng(0)
    scans = [rng.integers(0, 255, (48, 48)).astype(np.float32) for _ in range(30)]
    xs, ys, scan_of = [], [], []
    for k, scan in enumerate(scans):
        for j in range(4):  # four "slices" of each scan: small changes of brightness and noise
            xs.append((scan * (1 + 0.03 * j) + rng.normal(0, 3, scan.shape)).clip(0, 255).astype(np.uint8))
            ys.append(k % 3)
            scan_of.append(k)
    xs, ys, scan_of = np.stack(xs), np.array(ys), np.array(scan_of)
    groups = near_duplicate_groups(xs, threshold=0.95)
    for k in range(len(scans)):
        assert len(set(groups[scan_of == k].tolist())) == 1, f"scan {k} split into several groups"
    assert len(set(groups.tolist())) == len(scans), "unrelated scans were merged"

    mask = validation_mask("brain", [f"{i}.jpg" for i in range(len(ys))], ys, 0.2, seed=1, groups=groups)
    for k in range(len(scans)):
        assert len(set(mask[scan_of == k].tolist())) == 1, f"scan {k} is on both sides"
    assert 0.1 < mask.mean() < 0.4
    assert set(ys[mask].tolist()) == {0, 1, 2}, "every class is represented in validation"


def test_pipeline_from_trained_artifacts_runs_end_to_end(chest_folder, tmp_path):
    """Router + specialists built by train() plug straight into TwoStagePipeline."""
    kwargs = dict(epochs=1, img_size=32, batch_size=4, pretrained=None, bf16=False, log=lambda *_: None)
    chest = load_artifact(train("chest", chest_folder, tmp_path / "w" / "chest", **kwargs))
    brain_root = tmp_path / "brain"
    _folder(brain_root / "train", TASK_LABELS["brain"], 4, 2)
    brain = load_artifact(train("brain", brain_root, tmp_path / "w" / "brain", preprocessing="zscore", **kwargs))
    assert brain.preprocessing == "zscore" and chest.preprocessing == "none"
    assert "z-score" in brain.card["preprocessing"]
    # a router trained on chest vs brain vs generated negatives
    router_root = tmp_path / "router"
    for sub, src in (("chest_xray", chest_folder), ("brain_mri", brain_root)):
        (router_root / sub).mkdir(parents=True)
        (router_root / sub / "train").symlink_to(src / "train")
    for split, n in (("train", 6), ("val", 2)):  # real negatives of other modalities, by kind
        _folder(router_root / "other_modalities" / split, ["head_ct", "microscopy"], n, 3)
    router = load_artifact(
        train("router", router_root, tmp_path / "w" / "router", positives_per_class=12, negatives=24, **kwargs)
    )
    assert router.thresholds["min_confidence"] >= 0.5
    assert router.describer is not None and {"head_ct", "microscopy", "photo"} <= set(router.describer.kinds)
    for specialist in (chest, brain):  # each carries its feature-space check, fitted on train/
        assert specialist.feature_check is not None
        assert specialist.feature_check.threshold == specialist.card["ood"]["threshold"] > 0
        assert 0 <= specialist.thresholds["min_margin"] <= 1
    pipe = TwoStagePipeline(router=router, specialists={"chest": chest, "brain": brain})
    import io

    buf = io.BytesIO()
    Image.fromarray(np.full((64, 64), 100, np.uint8)).save(buf, format="PNG")
    result = pipe.run(buf.getvalue())
    assert result.route in {"chest_xray", "brain_mri", "unsupported"}
    assert abs(sum(result.route_probabilities.values()) - 1) < 1e-4
    assert "decode" in result.timings_ms and "total" in result.timings_ms
