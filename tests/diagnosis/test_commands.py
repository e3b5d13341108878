"""``train_model`` and ``evaluate_model`` are thin wrappers around the pipeline's training library:
these tests check the wrapping (options passed through, the artifact registered, inactive
unless --activate). The training itself is tested in tests/pipeline/."""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.diagnosis.models import ModelVersion

from .helpers import fake_version, write_fake_artifact


@pytest.fixture
def training(monkeypatch, settings, tmp_path, db):
    """A stand-in for apps.diagnosis.pipeline.training that records its calls."""
    settings.MODEL_WEIGHTS_DIR = tmp_path / "weights"
    ModelVersion.objects.all().delete()  # the shipped versions registered at migrate
    calls: dict[str, list] = {"train": [], "evaluate": []}
    real = importlib.import_module("apps.diagnosis.pipeline.training")

    def train(task, data_dir, out_dir, **config):
        real.check_options(task, config)  # the fake accepts exactly what the real trainer accepts
        calls["train"].append((task, Path(data_dir), Path(out_dir), config))
        return write_fake_artifact(Path(out_dir).parent, task, config.get("version", "t1"))

    def evaluate(artifact_dir, data_dir):
        calls["evaluate"].append((Path(artifact_dir), Path(data_dir)))
        return {"accuracy": 0.91, "macro_f1": 0.9, "n": 12, "confusion_matrix": [[5, 1], [0, 6]]}

    fake = types.SimpleNamespace(train=train, evaluate=evaluate, calls=calls)
    monkeypatch.setitem(sys.modules, "apps.diagnosis.pipeline.training", fake)
    package = importlib.import_module("apps.diagnosis.pipeline")
    monkeypatch.setattr(package, "training", fake, raising=False)
    return fake


def test_train_model_passes_options_and_registers_inactive(training, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    fake_version("chest", "v0", is_active=True)
    call_command(
        "train_model", "chest", "--data", str(data), "--epochs", "2", "--img-size", "160", "--model-version", "t7",
        "--set", "label_smoothing=0.1", "--set", "val_grouping=none",
    )  # fmt: skip
    task, data_dir, out_dir, config = training.calls["train"][0]
    assert (task, data_dir) == ("chest", data)
    assert out_dir == Path(tmp_path / "weights" / "chest")
    assert config["epochs"] == 2 and config["img_size"] == 160 and config["version"] == "t7"
    assert config["label_smoothing"] == 0.1 and config["val_grouping"] == "none" and config["threads"] >= 1
    mv = ModelVersion.objects.get(task="chest", version="t7")
    assert not mv.is_active and mv.artifact_path == "chest/t7"
    assert ModelVersion.objects.get(task="chest", is_active=True).version == "v0"
    assert "accuracy=0.9500" in capsys.readouterr().out


def test_train_model_refuses_an_option_the_trainer_does_not_know(training, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(CommandError, match="unknown training option.*augment"):
        call_command("train_model", "chest", "--data", str(data), "--set", "augment=light")
    assert training.calls["train"] == []


def test_train_model_activate(training, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    fake_version("brain", "v0", is_active=True)
    call_command("train_model", "brain", "--data", str(data), "--model-version", "t8", "--activate")
    assert ModelVersion.objects.get(task="brain", is_active=True).version == "t8"


def test_train_model_refuses_a_missing_folder(training, tmp_path):
    with pytest.raises(CommandError):
        call_command("train_model", "router", "--data", str(tmp_path / "nope"))
    assert training.calls["train"] == []


def test_evaluate_model_prints_and_writes_metrics(training, tmp_path, capsys):
    artifact = write_fake_artifact(tmp_path, "chest", "e1")
    data = tmp_path / "test"
    data.mkdir()
    out = tmp_path / "metrics.json"
    call_command("evaluate_model", str(artifact), "--data", str(data), "--json", str(out))
    assert training.calls["evaluate"] == [(artifact, data)]
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "0.9100" in printed and "confusion_matrix" in printed
    assert json.loads(out.read_text())["macro_f1"] == 0.9


def _tiny_brain_folder(root: Path) -> Path:
    import numpy as np
    from PIL import Image

    from apps.diagnosis.pipeline.training import TASK_LABELS

    rng = np.random.default_rng(0)
    for c, label in enumerate(TASK_LABELS["brain"]):
        (root / "train" / label).mkdir(parents=True)
        for i in range(4):
            img = np.full((40, 40), 40 + 50 * c, np.float32) + rng.normal(0, 10, (40, 40))
            Image.fromarray(img.clip(0, 255).astype("uint8")).save(root / "train" / label / f"{i}.png")
    return root


def test_train_model_really_trains_with_preprocessing_and_registers(db, settings, tmp_path, capsys):
    """No stand-in: one real epoch through the command, the artifact and the registry."""
    settings.MODEL_WEIGHTS_DIR = tmp_path / "weights"
    data = _tiny_brain_folder(tmp_path / "data")
    call_command(
        "train_model", "brain", "--data", str(data), "--epochs", "1", "--img-size", "32", "--batch-size", "4",
        "--preprocessing", "zscore", "--model-version", "tiny-1", "--set", "pretrained=null", "--set", "bf16=false",
    )  # fmt: skip
    card = json.loads((tmp_path / "weights" / "brain" / "tiny-1" / "card.json").read_text())
    assert card["preprocessing_method"] == "zscore" and card["input_size"] == 32
    mv = ModelVersion.objects.get(task="brain", version="tiny-1")
    assert not mv.is_active and mv.weights_sha256 == card["weights_sha256"]
    assert "Registered: brain tiny-1" in capsys.readouterr().out


def test_train_model_explains_an_empty_dataset(db, settings, tmp_path):
    settings.MODEL_WEIGHTS_DIR = tmp_path / "weights"
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(CommandError, match="No images found"):
        call_command("train_model", "chest", "--data", str(tmp_path / "empty"), "--set", "pretrained=null")
