"""The AI read through a REAL Celery worker on the local Redis and PostgreSQL.

A study is created the way the portal creates it (``submit_study``: commit, then the task is
sent to Redis on commit); a separate ``celery worker`` process, pointed at the same test
database, media folder and encryption key, picks it up, runs the shipped models (or untrained
artifacts of the same network while the checkout has no weights) and stores the Diagnosis.
Sending the task a second time must not store a second one.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django_scopes import scopes_disabled

from apps.diagnosis.models import Diagnosis, ModelVersion
from apps.diagnosis.registry import find_artifacts, sync_shipped_models
from apps.diagnosis.tasks import diagnose_study
from apps.studies.models import Study, StudyStatus
from tests.celery_worker import celery_worker, dedicated_broker
from tests.factories import make_study

from .helpers import write_untrained_models

pytestmark = [pytest.mark.integration]

TIMEOUT_S = 120
TEST_KEY = base64.b64encode(b"integration-test-key-32-bytes!!!").decode()


@pytest.fixture
def weights_dir(transactional_db, settings, tmp_path):
    """The shipped weights when the checkout has them; otherwise real but untrained artifacts
    (the pipeline and every line of the worker path still run, only the labels mean nothing)."""
    shipped = Path(django_settings.MODEL_WEIGHTS_DIR)
    tasks = {path.parent.name for path in find_artifacts(shipped)}
    if {"router", "chest", "brain"} <= tasks:
        root = shipped
    else:
        root = tmp_path / "weights"
        write_untrained_models(root)
    settings.MODEL_WEIGHTS_DIR = root
    with scopes_disabled():
        ModelVersion.objects.all().delete()
        sync_shipped_models()
    return root


@pytest.fixture
def celery_to_dedicated_redis(redis_url):
    """Point this process's Celery app (not eager) at this run's own diagnosis queue."""
    with dedicated_broker(redis_url, "diagnosis") as broker:
        yield broker


@pytest.fixture
def worker(transactional_db, postgres_required, celery_to_dedicated_redis, weights_dir, settings, tmp_path):
    """A real ``celery worker`` process sharing the test's database, media folder and key."""
    settings.FILE_ENCRYPTION_KEYS = {"itest": base64.b64decode(TEST_KEY)}
    settings.FILE_ENCRYPTION_ACTIVE_KEY_ID = "itest"
    with celery_worker(
        "itest",
        celery_to_dedicated_redis,
        "itest",
        TEST_KEY,
        tmp_path,
        MODEL_WEIGHTS_DIR=str(weights_dir),
        TORCH_NUM_THREADS="1",
    ) as running:
        yield running


def _log_tail(log_path: Path, n: int = 4000) -> str:
    return log_path.read_text(errors="replace")[-n:] if log_path.exists() else "(no worker log)"


def _wait_until(predicate, what: str, proc, log_path: Path, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(
                f"the Celery worker exited ({proc.returncode}) while waiting for {what}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; worker log:\n{_log_tail(log_path)}")


def _runs_finished(log_path: Path) -> int:
    """diagnose_study runs the worker has logged as finished."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return sum(1 for line in text.splitlines() if "diagnosis.diagnose_study[" in line and "succeeded in" in line)


def test_real_worker_stores_exactly_one_diagnosis(worker, world):
    proc, log_path = worker
    chest_xray = (Path(__file__).resolve().parents[1] / "fixtures" / "chest_xray.jpg").read_bytes()
    study = make_study(world.paul_record, world.alice, data=chest_xray, filename="cxr.jpg")  # sent on commit

    def finished():
        with scopes_disabled():
            row = Study.objects.filter(pk=study.pk).values("status", "status_message").first()
        return row if row["status"] in (StudyStatus.DONE, StudyStatus.FAILED) else None

    row = _wait_until(finished, f"study {study.pk} to finish", proc, log_path)
    assert row["status"] == StudyStatus.DONE, f"{row}\n{_log_tail(log_path)}"
    with scopes_disabled():
        diagnoses = list(Diagnosis.objects.filter(study_id=study.pk))
    assert len(diagnoses) == 1
    diagnosis = diagnoses[0]
    assert diagnosis.hospital_id == world.a.pk
    assert diagnosis.router_sha256 == diagnosis.router_version.weights_sha256
    assert diagnosis.route == "chest_xray" and diagnosis.task == "chest" and not diagnosis.refused
    assert diagnosis.label in diagnosis.specialist_version.labels
    assert diagnosis.specialist_sha256 == diagnosis.specialist_version.weights_sha256
    assert diagnosis.overlay_name  # the heatmap, stored encrypted by the worker
    assert diagnosis.timings_ms

    # The same task again (a redelivery, a requeue): still exactly one Diagnosis.
    _wait_until(lambda: _runs_finished(log_path) >= 1, "the first run to be logged", proc, log_path)
    diagnose_study.delay(hospital_id=study.hospital_id, study_id=study.pk)
    _wait_until(lambda: _runs_finished(log_path) >= 2, "the second run to finish", proc, log_path)
    with scopes_disabled():
        assert Diagnosis.objects.filter(study_id=study.pk).count() == 1
        assert Study.objects.get(pk=study.pk).status == StudyStatus.DONE
