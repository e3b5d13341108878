"""Nothing waits forever, on the real stack: PostgreSQL, a Redis of the test's own and real
``celery worker`` processes (with beat embedded, as ``worker -B``).

* Redis stops; a doctor uploads (201, the study stays queued and says the AI service is busy);
  Redis comes back empty; the watchdog finds the read in no queue and sends it again: done.
* A worker is killed (SIGKILL) in the middle of a read; a new worker starts; the lease of the dead
  one runs out and the watchdog sends the read again: done, and each doctor caring for the patient
  notified exactly once.
* A worker that starts looks for lost reads at once (``worker_ready``), without beat.

The Redis here is a throwaway ``redis-server`` on a free port (the shared one on 6379 is never
stopped). Leases are short (``DIAGNOSIS_LEASE_SECONDS=4``, the watchdog every 2 s) and the models
small untrained ones, so the bounds below are minutes only for a loaded machine.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_scopes import scopes_disabled
from rest_framework.test import APIClient

from apps.accounts.models import AuditEvent
from apps.chat.models import Notification, NotificationKind
from apps.diagnosis import services
from apps.diagnosis.models import Diagnosis, ModelVersion
from apps.diagnosis.registry import sync_shipped_models
from apps.studies.models import Study, StudyStatus
from apps.studies.services import assign_doctor
from tests.availability import unavailable
from tests.celery_worker import Broker, celery_worker, dedicated_broker
from tests.factories import make_study, png_bytes

from .helpers import write_untrained_models

pytestmark = [pytest.mark.integration]

TEST_KEY = base64.b64encode(b"integration-test-key-32-bytes!!!").decode()
#: Generous for a loaded 2-core machine: a worker start imports Django and torch.
START_S = 180
#: From the moment the fault is repaired to the study done (a few lease and beat periods and one
#: small read; the rest is slack for a loaded machine).
RECOVERY_S = 240
LEASE_S = 4
WATCHDOG_S = 2


class RedisServer:
    """A ``redis-server`` of the test's own on a free port, without persistence, so a restart
    loses everything, as a crashed production Redis without AOF would."""

    def __init__(self, log_dir: Path):
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("integration test: redis-server is not installed")
        self.binary = binary
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = log_dir / f"redis-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        wait_until(lambda: _answers(client), "the throwaway Redis to answer", 30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.proc = None


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def wait_until(predicate: Callable[[], Any], what: str, timeout: float, logs: tuple[Path, ...] = ()) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    tails = "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-5000:]}" for p in logs if p.exists())
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{tails}")


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def broker(redis_server) -> Iterator[Broker]:
    with dedicated_broker(redis_server.url, "recovery", clear=False) as broker:
        yield broker


@pytest.fixture
def models_dir(transactional_db, postgres_required, settings, tmp_path) -> Path:
    """Small untrained models (the read itself is not what is tested; it must only be quick)."""
    root = tmp_path / "weights"
    write_untrained_models(root)
    settings.MODEL_WEIGHTS_DIR = root
    settings.FILE_ENCRYPTION_KEYS = {"itest": base64.b64decode(TEST_KEY)}
    settings.FILE_ENCRYPTION_ACTIVE_KEY_ID = "itest"
    with scopes_disabled():
        ModelVersion.objects.all().delete()
        sync_shipped_models()
    return root


@pytest.fixture
def start_worker(broker, models_dir, tmp_path):
    """Starts workers on the throwaway Redis with a short lease and a fast watchdog; yields a
    function ``start(name, beat=…, app=…) -> (process, log)`` that returns once the worker is
    ready. Every worker is stopped at the end."""
    started = []

    def start(name: str, *, beat: bool, app: str = "imagemedix") -> tuple[subprocess.Popen, Path]:
        manager = celery_worker(
            name,
            broker,
            "itest",
            TEST_KEY,
            tmp_path,
            beat=beat,
            app=app,
            MODEL_WEIGHTS_DIR=str(models_dir),
            MODEL_CACHE_DIR=str(tmp_path / "model-cache"),
            INFERENCE_BACKEND="eager",
            TORCH_NUM_THREADS="1",
            DIAGNOSIS_LEASE_SECONDS=str(LEASE_S),
            DIAGNOSIS_WATCHDOG_SECONDS=str(WATCHDOG_S),
        )
        proc, log = manager.__enter__()
        started.append(manager)

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"worker {name} exited ({proc.returncode}):\n{log.read_text(errors='replace')[-5000:]}")
            return log.exists() and " ready." in log.read_text(errors="replace")

        wait_until(ready, f"worker {name} to be ready", START_S, (log,))
        return proc, log

    yield start
    for manager in reversed(started):
        manager.__exit__(None, None, None)


def _status(study_id: int) -> str:
    with scopes_disabled():
        return Study.objects.filter(pk=study_id).values_list("status", flat=True).get()


def _ready_notifications(study_id: int) -> list[str]:
    with scopes_disabled():
        return sorted(
            Notification.objects.filter(kind=NotificationKind.RESULT_READY, data__study_id=study_id).values_list(
                "user__email", flat=True
            )
        )


def test_an_upload_during_a_broker_outage_is_read_once_the_broker_is_back(world, redis_server, start_worker):
    worker, log = start_worker("outage", beat=True)
    redis_server.stop()

    api = APIClient()
    api.force_login(world.alice, backend="django.contrib.auth.backends.ModelBackend")
    started = time.monotonic()
    response = api.post(
        reverse("api:study-list", kwargs={"hospital_slug": world.a.slug}),
        {"patient": world.paul_record.pk, "file": SimpleUploadedFile("cxr.png", png_bytes(), "image/png")},
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert time.monotonic() - started < 30  # the upload does not hang on the broker
    study_id = response.json()["id"]
    with scopes_disabled():
        study = Study.objects.get(pk=study_id)
    assert study.status == StudyStatus.QUEUED
    assert study.status_message == services.MSG_BROKER_DOWN

    time.sleep(2)
    assert _status(study_id) == StudyStatus.QUEUED  # nothing can read it while Redis is down
    redis_server.start()  # back, and empty: the message was never sent

    wait_until(lambda: _status(study_id) == StudyStatus.DONE, f"study {study_id} to be read", RECOVERY_S, (log,))
    with scopes_disabled():
        assert Diagnosis.objects.filter(study_id=study_id).count() == 1
        reasons = [e.detail["reason"] for e in AuditEvent.objects.filter(action="study.requeue").order_by("pk")]
    # Sent again because its message was nowhere (a later lease expiry on a starved machine would
    # only add a harmless, idempotent re-send).
    assert reasons[0] == "not_in_broker", reasons
    assert worker.poll() is None


def test_a_read_whose_worker_is_killed_is_finished_by_another_and_notified_once(world, start_worker):
    with scopes_disabled():
        assign_doctor(world.paul_record, world.bob)  # two doctors care for Paul
    hanging, hanging_log = start_worker("hanging", beat=False, app="tests.hanging_worker")
    study = make_study(world.paul_record, world.alice)  # committed: sent to Redis at once

    def hanging_mid_read() -> bool:
        return "hanging-worker: read started" in hanging_log.read_text(errors="replace")

    wait_until(hanging_mid_read, "the read to start", START_S, (hanging_log,))
    with scopes_disabled():
        leased = Study.objects.get(pk=study.pk)
    assert leased.status == StudyStatus.PROCESSING and leased.processing_until is not None
    os.kill(hanging.pid, signal.SIGKILL)
    hanging.wait(timeout=30)

    _, log = start_worker("rescue", beat=True)
    wait_until(lambda: _status(study.pk) == StudyStatus.DONE, f"study {study.pk} to be read", RECOVERY_S, (log,))
    with scopes_disabled():
        assert Diagnosis.objects.filter(study_id=study.pk).count() == 1
        reasons = [e.detail["reason"] for e in AuditEvent.objects.filter(action="study.requeue").order_by("pk")]
    assert reasons[0] == "lease_expired", reasons
    # The result is announced on commit; give the notifications (and any stray rerun) a moment.
    wait_until(lambda: len(_ready_notifications(study.pk)) >= 2, "the notifications", 30, (log,))
    time.sleep(3 * WATCHDOG_S)
    assert _ready_notifications(study.pk) == ["alice@st-mary.example", "bob@st-mary.example"]


def test_a_worker_that_starts_sends_lost_reads_at_once(world, broker, start_worker):
    study = make_study(world.paul_record, world.alice)  # committed and sent to Redis …
    client = redis.Redis.from_url(broker.url)
    client.delete(broker.queue)  # … which then loses it
    with scopes_disabled():
        Study.objects.filter(pk=study.pk).update(updated_at=study.created_at.replace(year=2020))

    _, log = start_worker("starting", beat=False)  # no beat: only its start-up check can help
    wait_until(lambda: _status(study.pk) == StudyStatus.DONE, f"study {study.pk} to be read", RECOVERY_S, (log,))
    with scopes_disabled():
        reasons = [e.detail["reason"] for e in AuditEvent.objects.filter(action="study.requeue").order_by("pk")]
    assert reasons[0] == "not_in_broker", reasons
