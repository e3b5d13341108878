"""The engine with the REAL pipeline (torch, timm, Grad-CAM) on real, loadable, but untrained
artifacts: runs everywhere, with or without the shipped weights."""

from __future__ import annotations

import math
from io import BytesIO

import pytest
from django_scopes import scopes_disabled
from PIL import Image

from apps.diagnosis import engine
from apps.diagnosis.models import Diagnosis, ModelVersion
from apps.diagnosis.registry import sync_shipped_models
from apps.studies.models import Study, StudyStatus
from apps.studies.storage import read_encrypted
from tests.factories import make_study, png_bytes

from .helpers import read_now, write_untrained_models


@pytest.fixture
def untrained_registry(db, settings, tmp_path_factory):
    root = tmp_path_factory.mktemp("weights")
    write_untrained_models(root)
    settings.MODEL_WEIGHTS_DIR = root
    engine.clear_cache()
    with scopes_disabled():
        ModelVersion.objects.all().delete()
        sync_shipped_models()
        yield {mv.task: mv for mv in ModelVersion.objects.all()}
    engine.clear_cache()


def test_real_pipeline_read_is_stored_with_versions_hashes_and_overlay(world, untrained_registry):
    study = make_study(world.paul_record, world.alice, data=png_bytes((300, 240), seed=5))

    read_now(study)

    with scopes_disabled():
        study = Study.objects.get(pk=study.pk)
        [diagnosis] = Diagnosis.objects.filter(study=study)
    assert study.status == StudyStatus.DONE and study.modality == "chest_xray"
    assert diagnosis.route == "chest_xray" and diagnosis.task == "chest" and not diagnosis.refused
    assert diagnosis.label == "bacterial_pneumonia"  # the biased head
    assert math.isclose(sum(diagnosis.probabilities.values()), 1.0, abs_tol=1e-4)
    assert set(diagnosis.probabilities) == {"normal", "bacterial_pneumonia", "viral_pneumonia"}
    assert diagnosis.router_sha256 == untrained_registry["router"].weights_sha256
    assert diagnosis.specialist_version == untrained_registry["chest"]
    assert diagnosis.specialist_sha256 == untrained_registry["chest"].weights_sha256
    assert {"decode", "router", "specialist", "total"} <= set(diagnosis.timings_ms)
    if diagnosis.roi_box is not None:  # a box only when the heatmap is focal (untrained weights: maybe not)
        x0, y0, x1, y1 = diagnosis.roi_box
        assert 0 <= x0 < x1 <= 300 and 0 <= y0 < y1 <= 240  # original image pixels
    overlay = Image.open(BytesIO(read_encrypted(diagnosis.overlay_name, diagnosis.overlay_sha256)))
    assert overlay.format == "PNG" and overlay.size == (300, 240)


def test_models_are_loaded_once_per_process(world, untrained_registry):
    first = make_study(world.paul_record, world.alice)
    second = make_study(world.paul_record, world.alice, data=png_bytes((128, 128), seed=9))
    read_now(first)
    loaded = engine.loaded_hashes()
    pipeline = engine.get_pipeline(
        untrained_registry["router"], {"chest": untrained_registry["chest"], "brain": untrained_registry["brain"]}
    )
    read_now(second)
    assert engine.loaded_hashes() == loaded == {mv.weights_sha256 for mv in untrained_registry.values()}
    assert (
        engine.get_pipeline(
            untrained_registry["router"], {"chest": untrained_registry["chest"], "brain": untrained_registry["brain"]}
        )
        is pipeline
    )
