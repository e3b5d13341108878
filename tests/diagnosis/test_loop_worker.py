"""The learning loop through a REAL Celery worker on the local Redis and PostgreSQL: the tasks
named in the beat schedule (what ``celery beat`` sends) write the summary rows and drift alerts,
and the worker's AI read of an uploaded study also stores the shadow version's read."""

from __future__ import annotations

import base64
import datetime as dt
import time
from pathlib import Path

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from apps.chat.models import Notification
from apps.diagnosis import deployments
from apps.diagnosis.models import Diagnosis, DriftAlert, ModelVersion, ShadowResult, VersionPerformance
from apps.diagnosis.registry import sync_shipped_models
from apps.studies.models import Study, StudyStatus
from imagemedix.celery import app
from tests.celery_worker import celery_worker, dedicated_broker
from tests.factories import make_study

from .helpers import fake_version, write_untrained_artifact, write_untrained_models
from .traffic import Read, Traffic, drift_registry, lung_ct_week, write_reads

pytestmark = [pytest.mark.integration]

TEST_KEY = base64.b64encode(b"integration-test-key-32-bytes!!!").decode()


@pytest.fixture
def worker(transactional_db, postgres_required, redis_url, settings, tmp_path):
    with dedicated_broker(redis_url, "loop") as broker:
        with celery_worker("loop", broker, "itest", TEST_KEY, tmp_path) as running:
            yield running


def _beat_task(name: str) -> str:
    [entry] = [e for e in app.conf.beat_schedule.values() if e["task"] == name]
    return entry["task"]


def _wait_until(predicate, what: str, worker, timeout: float = 60):
    proc, log_path = worker
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        if proc.poll() is not None:
            pytest.fail(f"the worker exited while waiting for {what}:\n{Path(log_path).read_text()[-4000:]}")
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}:\n{Path(log_path).read_text()[-4000:]}")


def test_the_scheduled_summary_runs_on_the_worker(worker, world):
    with scopes_disabled():
        ModelVersion.objects.all().delete()
        router, chest = fake_version("router", "r1", is_active=True), fake_version("chest", "c1", is_active=True)
    when = timezone.now() - dt.timedelta(days=1)
    write_reads(
        world.paul_record,
        world.alice,
        [Read(doctor_label="normal"), Read(doctor_label="viral_pneumonia"), Read()],
        when=when,
        router=router,
        specialist=chest,
    )
    app.send_task(_beat_task("diagnosis.summarize_performance"))

    def summarised():
        with scopes_disabled():
            return VersionPerformance.objects.filter(hospital=world.a, model_version=chest).first()

    row = _wait_until(summarised, "the performance summary", worker)
    assert (row.reads, row.reviewed, row.agreed) == (3, 2, 1)


def test_the_scheduled_drift_check_alerts_on_the_worker(worker, world):
    # Five ordinary weeks and a week of lung CT instead of brain MRI, ending yesterday.
    today = timezone.now().astimezone(dt.UTC).date()
    start = dt.datetime.combine(today - dt.timedelta(days=42), dt.time(9), tzinfo=dt.UTC)
    traffic = Traffic(world, drift_registry(), start)
    for day in range(35):
        traffic.ordinary_day(day)
    lung_ct_week(traffic)

    app.send_task(_beat_task("diagnosis.check_drift"))

    def alerted():
        with scopes_disabled():
            signals = set(DriftAlert.objects.filter(hospital=world.a).values_list("signal", flat=True))
        return signals if len(signals) >= 2 else None

    assert _wait_until(alerted, "the drift alerts", worker) == {"refusal_rate", "modality_tags"}
    with scopes_disabled():
        assert Notification.objects.filter(user=world.carol, kind="drift_alert").count() == 2


@pytest.fixture
def reading_worker(transactional_db, postgres_required, redis_url, settings, tmp_path):
    """A worker that reads studies: untrained artifacts (the router says chest X-ray, the live chest
    model bacterial pneumonia) and a chest candidate that says normal, registered inactive."""
    root = tmp_path / "weights"
    write_untrained_models(root)
    write_untrained_artifact(root, "chest", "candidate", favour=0)
    settings.MODEL_WEIGHTS_DIR = root
    settings.FILE_ENCRYPTION_KEYS = {"itest": base64.b64decode(TEST_KEY)}
    settings.FILE_ENCRYPTION_ACTIVE_KEY_ID = "itest"
    with scopes_disabled():
        ModelVersion.objects.all().delete()
        sync_shipped_models()  # activates "untrained", the newest name, and registers the candidate inactive
    with dedicated_broker(redis_url, "loop-read") as broker:
        env = {"MODEL_WEIGHTS_DIR": str(root), "TORCH_NUM_THREADS": "1", "INFERENCE_BACKEND": "eager"}
        with celery_worker("loop-read", broker, "itest", TEST_KEY, tmp_path, **env) as running:
            yield running


def test_the_worker_stores_the_shadow_read_beside_the_live_one(reading_worker, world):
    with scopes_disabled():
        candidate = ModelVersion.objects.get(task="chest", version="candidate")
        assert not candidate.is_active
        deployments.start_shadow(world.a, candidate, world.carol)
    xray = (Path(__file__).resolve().parents[1] / "fixtures" / "chest_xray.jpg").read_bytes()
    study = make_study(world.paul_record, world.alice, data=xray, filename="cxr.jpg")  # sent on commit

    def shadowed():
        with scopes_disabled():
            return ShadowResult.objects.filter(diagnosis__study_id=study.pk).select_related("diagnosis").first()

    shadow = _wait_until(shadowed, "the shadow read", reading_worker, timeout=180)
    with scopes_disabled():
        [live] = Diagnosis.objects.filter(study_id=study.pk)
        assert Study.objects.get(pk=study.pk).status == StudyStatus.DONE
    assert live.specialist_version.version == "untrained" and live.label == "bacterial_pneumonia"
    assert shadow.model_version == candidate and shadow.label == "normal" and shadow.diagnosis == live
