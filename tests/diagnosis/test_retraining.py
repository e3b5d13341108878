"""Retraining from feedback: ``train_model --extra-data`` trains on an ``export_feedback`` folder's
train/ split beside the base data (validation stays the base data's), and ``evaluate_model
--compare-active`` reads the export's held-out cases with the candidate and the live version."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django_scopes import scopes_disabled
from PIL import Image

from apps.diagnosis import engine
from apps.diagnosis.models import ModelVersion
from apps.diagnosis.registry import sync_shipped_models

from .helpers import write_untrained_artifact, write_untrained_models
from .test_commands import _tiny_brain_folder, training  # noqa: F401 - the stand-in trainer fixture


def _export(root: Path, dataset: str, labels: dict[str, int], split: str = "train") -> Path:
    """A folder as export_feedback writes it: ROOT/<dataset>/<split>/<label>/*.png."""
    rng = np.random.default_rng(1)
    for label, count in labels.items():
        folder = root / dataset / split / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = (rng.random((48, 48)) * 255).astype("uint8")
            Image.fromarray(pixels, "L").save(folder / f"st-mary-{label}-{i}.png")
    return root


def test_train_model_passes_the_exports_folder_for_the_task(training, tmp_path):  # noqa: F811
    data = tmp_path / "data"
    data.mkdir()
    export = _export(tmp_path / "export", "chest_xray", {"normal": 2})
    call_command("train_model", "chest", "--data", str(data), "--extra-data", str(export), "--model-version", "x1")
    assert training.calls["train"][0][3]["extra_data"] == str(export / "chest_xray")

    with pytest.raises(CommandError, match="brain_mri/train does not exist"):
        call_command("train_model", "brain", "--data", str(data), "--extra-data", str(export))
    with pytest.raises(CommandError, match="specialist"):
        call_command("train_model", "router", "--data", str(data), "--extra-data", str(export))
    assert len(training.calls["train"]) == 1


def _train(tmp_path: Path, data: Path, version: str, *extra: str, capsys) -> tuple[dict, int]:
    call_command(
        "train_model", "brain", "--data", str(data), "--epochs", "1", "--img-size", "32", "--batch-size", "4",
        "--model-version", version, "--set", "pretrained=null", "--set", "bf16=false", "--no-register", *extra,
    )  # fmt: skip
    out = capsys.readouterr().out
    trained = int(re.search(r"brain: train (\d+), validation", out).group(1))
    card = json.loads((tmp_path / "weights" / "brain" / version / "card.json").read_text())
    return card, trained


def test_extra_data_is_trained_on_and_never_validated_on(db, settings, tmp_path, capsys):
    """No stand-in: a real one-epoch training with the doctors' cases."""
    settings.MODEL_WEIGHTS_DIR = tmp_path / "weights"
    data = _tiny_brain_folder(tmp_path / "data")  # 16 images
    export = _export(tmp_path / "export", "brain_mri", {"glioma": 3, "no_tumor": 2})
    _export(export, "brain_mri", {"glioma": 4}, split="test")  # held out: never read by training

    card, trained = _train(tmp_path, data, "plus", "--extra-data", str(export), capsys=capsys)

    validation = card["validation_metrics"]["n"]
    assert 0 < validation < 16
    assert trained == 16 - validation + 5  # validation comes from the base data; the export's train/ split only
    assert card["training"]["extra_data"] == str(export / "brain_mri")
    from apps.diagnosis.pipeline.training import TASK_LABELS, load_folder, manifest_hash

    _, ys, names = load_folder(data / "train", TASK_LABELS["brain"], 32)
    _, extra_ys, extra_names = load_folder(export / "brain_mri" / "train", TASK_LABELS["brain"], 32)
    assert card["data_manifest_sha256"] == manifest_hash(extra_names, extra_ys, manifest_hash(names, ys))


@pytest.fixture
def live_models(db, settings, tmp_path):
    """The registry's active versions: untrained artifacts whose chest model always says
    bacterial pneumonia (and a router that always says chest X-ray)."""
    root = tmp_path / "weights"
    write_untrained_models(root)
    settings.MODEL_WEIGHTS_DIR = root
    settings.INFERENCE_BACKEND = "eager"
    engine.clear_cache()
    with scopes_disabled():
        ModelVersion.objects.all().delete()
        sync_shipped_models()
    yield root
    engine.clear_cache()


def test_evaluate_model_compares_a_candidate_with_the_live_version(live_models, tmp_path, capsys):
    candidate = write_untrained_artifact(tmp_path / "candidates", "chest", "retrained", favour=0)  # says "normal"
    export = _export(tmp_path / "export", "chest_xray", {"normal": 3, "bacterial_pneumonia": 1}, split="test")
    out = tmp_path / "comparison.json"

    call_command(
        "evaluate_model", str(candidate), "--data", str(export / "chest_xray"), "--compare-active", "--json", str(out)
    )

    printed = capsys.readouterr().out
    assert "4 held-out cases (chest)" in printed
    result = json.loads(out.read_text())
    assert result["candidate"]["version"] == "retrained" and result["live"]["version"] == "untrained"
    assert (result["candidate"]["right"], result["live"]["right"]) == (3, 1)
    assert result["paired"] == {"both": 0, "candidate_only": 3, "live_only": 1, "neither": 0}
    assert result["mcnemar_exact_p"] == pytest.approx(0.625)
    assert "only the candidate 3" in printed

    with pytest.raises(CommandError, match="No labelled images"):
        call_command("evaluate_model", str(candidate), "--data", str(tmp_path), "--compare-active")
