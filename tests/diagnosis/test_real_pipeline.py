"""The task in the embedded (eager) mode with the REAL shipped models: what a fresh checkout does
when a doctor uploads an image. The trained weights are committed in apps/diagnosis/weights/."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django_scopes import scopes_disabled
from PIL import Image

from apps.diagnosis import engine
from apps.diagnosis.models import Diagnosis, ModelVersion
from apps.diagnosis.registry import find_artifacts, sync_shipped_models
from apps.diagnosis.tasks import diagnose_study
from apps.studies.models import Study, StudyStatus
from apps.studies.storage import read_encrypted
from tests.factories import make_study, png_bytes

from .helpers import task_ids


@pytest.fixture
def shipped_models(db):
    tasks = {path.parent.name for path in find_artifacts(Path(django_settings.MODEL_WEIGHTS_DIR))}
    missing = {"router", "chest", "brain"} - tasks
    assert not missing, f"no shipped weights for {', '.join(sorted(missing))} in apps/diagnosis/weights/"
    with scopes_disabled():
        sync_shipped_models()
        return {mv.task: mv for mv in ModelVersion.objects.filter(is_active=True)}


def _run(study, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        diagnose_study.apply(kwargs=task_ids(study))
    with scopes_disabled():
        return Study.objects.get(pk=study.pk), list(Diagnosis.objects.filter(study_id=study.pk))


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _image(name: str) -> bytes:
    if name == "noise":
        return png_bytes((256, 256), seed=11)
    if name == "gradient":
        ramp = np.tile(np.linspace(0, 255, 256, dtype="uint8"), (256, 1))
        buf = io.BytesIO()
        Image.fromarray(ramp, "L").save(buf, format="PNG")
        return buf.getvalue()
    return (FIXTURES / name).read_bytes()  # real test-split images (tests/fixtures/README.md)


@pytest.mark.parametrize(
    ("image", "expected_route"),
    [("chest_xray.jpg", "chest_xray"), ("brain_mri.jpg", "brain_mri"), ("noise", None), ("gradient", None)],
)
def test_eager_read_with_the_shipped_models(
    world, shipped_models, eager_celery, django_capture_on_commit_callbacks, image, expected_route
):
    study = make_study(world.paul_record, world.alice, data=_image(image), filename=image)

    study, diagnoses = _run(study, django_capture_on_commit_callbacks)

    assert study.status in (StudyStatus.DONE, StudyStatus.UNSURE, StudyStatus.REFUSED), study.status_message
    assert len(diagnoses) == 1
    diagnosis = diagnoses[0]
    router = shipped_models["router"]
    assert diagnosis.router_version_id == router.pk and diagnosis.router_sha256 == router.weights_sha256
    assert router.weights_sha256 in engine.loaded_hashes()  # loaded once, kept for the process
    assert set(diagnosis.route_probabilities) >= {"chest_xray", "brain_mri"}
    assert diagnosis.timings_ms
    if expected_route is None:  # synthetic images are what the router must refuse
        assert diagnosis.refused and diagnosis.refusal_reason
        assert study.modality == "unsupported" and study.status == StudyStatus.REFUSED
        assert study.status_message.startswith("Not read by the AI: ")
    else:
        assert not diagnosis.refused, diagnosis.refusal_reason
        assert study.status == (StudyStatus.UNSURE if diagnosis.indeterminate else StudyStatus.DONE)
        assert diagnosis.route == study.modality == expected_route
        specialist = shipped_models[diagnosis.task]
        assert diagnosis.specialist_sha256 == specialist.weights_sha256
        assert diagnosis.label in specialist.labels
        assert math.isclose(sum(diagnosis.probabilities.values()), 1.0, abs_tol=1e-3)
        assert read_encrypted(diagnosis.overlay_name, diagnosis.overlay_sha256).startswith(b"\x89PNG")
        assert study.status_message.startswith("AI second read ready: ")

    # again: idempotent, and the models are not loaded a second time
    loaded = engine.loaded_hashes()
    study, diagnoses = _run(study, django_capture_on_commit_callbacks)
    assert len(diagnoses) == 1 and engine.loaded_hashes() == loaded
