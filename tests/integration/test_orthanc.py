"""A real PACS sends a study to the portal: Orthanc (Debian's ``orthanc`` + ``orthanc-dicomweb``)
→ STOW-RS → matched by MRN → read by the AI on a real Celery worker → live on the worklist.

Everything is real: the portal runs as a live HTTP server on the test's PostgreSQL; Orthanc,
started from a generated configuration, holds the study and forwards it with its own DICOMweb
client (``POST /dicom-web/servers/imagemedix/stow``) using an integration credential; a ``celery
worker`` process runs the shipped models; the doctor's notification socket goes through the real
ASGI application on channels-redis, shared with the worker.
"""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django_scopes import scopes_disabled

from apps.diagnosis.models import Diagnosis, ModelVersion
from apps.diagnosis.registry import sync_shipped_models
from apps.integration.credentials import create_credential
from apps.integration.models import DicomStudy
from apps.studies.models import FINISHED_STATUSES, RESULT_STATUSES, Study
from tests.auth import Client
from tests.celery_worker import celery_worker, dedicated_broker

from .helpers import chest_xray_dicom, uids
from .orthanc import require_orthanc, running_orthanc

pytestmark = [pytest.mark.integration]

TEST_KEY = base64.b64encode(b"pacs-integration-key-32-bytes!!!").decode()
READ_TIMEOUT_S = 180


@pytest.fixture
def live_layer(settings, redis_url, transactional_db):
    """channels-redis on the test's Redis, with a prefix of this test's own (the worker gets it too)."""
    prefix = f"imagemedix-pacs-{uuid.uuid4().hex[:12]}"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [{"address": redis_url, **settings.CHANNELS_REDIS_CONNECTION}], "prefix": prefix},
        }
    }
    return prefix


@pytest.fixture
def worker(transactional_db, postgres_required, redis_url, live_layer, settings, tmp_path):
    """A real ``celery worker`` with the shipped models, on this run's own queue."""
    require_orthanc()  # before minutes of model loading
    settings.FILE_ENCRYPTION_KEYS = {"itest": base64.b64decode(TEST_KEY)}
    settings.FILE_ENCRYPTION_ACTIVE_KEY_ID = "itest"
    with scopes_disabled():  # a transactional test starts from an empty registry
        ModelVersion.objects.all().delete()
        sync_shipped_models()
    with dedicated_broker(redis_url, "pacs") as broker:
        with celery_worker(
            "pacs",
            broker,
            "itest",
            TEST_KEY,
            tmp_path,
            MODEL_WEIGHTS_DIR=str(django_settings.MODEL_WEIGHTS_DIR),
            TORCH_NUM_THREADS="1",
            CHANNELS_PREFIX=live_layer,
        ) as running:
            yield running


def _session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def test_a_study_sent_by_orthanc_is_matched_read_and_shows_up_live(world, live_server, worker, tmp_path):
    _proc, worker_log = worker
    issued = create_credential(world.a, name="Orthanc, radiology", actor=world.carol)
    dicom = chest_xray_dicom(patient_id=world.paul_record.mrn)
    study_uid, _, sop_uid = uids(dicom)
    cookie = _session_cookie(world.alice)

    with running_orthanc(
        tmp_path,
        server_url=f"{live_server.url}/dicomweb/h/{world.a.slug}/",
        username=issued.credential.key_id,
        password=issued.secret,
    ) as orthanc:
        stored = orthanc.store(dicom)
        assert stored["Status"] == "Success"
        orthanc_study = stored["ParentStudy"]

        async def scenario() -> list[dict]:
            from imagemedix.asgi import application

            headers = [
                (b"host", b"testserver"),
                (b"origin", b"http://testserver"),
                (b"cookie", f"sessionid={cookie}".encode()),
            ]
            socket = WebsocketCommunicator(application, f"/ws/h/{world.a.slug}/notifications/", headers=headers)
            connected, _ = await socket.connect(timeout=10)
            assert connected
            assert (await socket.receive_json_from(timeout=10))["type"] == "hello"
            # Orthanc's synchronous STOW job, off the event loop: the socket keeps listening.
            await sync_to_async(orthanc.stow, thread_sensitive=False)([orthanc_study])
            events = []
            while not events or events[-1]["status"] not in FINISHED_STATUSES:
                event = await socket.receive_json_from(timeout=READ_TIMEOUT_S)
                if event["type"] == "study.status":
                    events.append(event)
            await socket.disconnect()
            await get_channel_layer().close_pools()
            return events

        try:
            events = async_to_sync(scenario)()
        except Exception as exc:
            raise AssertionError(f"{exc!r}\nworker log:\n{_tail(worker_log)}\nOrthanc log:\n{orthanc.log()}") from exc

    with scopes_disabled():
        dicom_study = DicomStudy.objects.get(hospital=world.a, study_instance_uid=study_uid)
        assert dicom_study.patient == world.paul_record  # matched by MRN
        study = Study.objects.get(dicom_instance__sop_instance_uid=sop_uid)
        diagnosis = Diagnosis.objects.get(study=study)
    # Alice saw it arrive and be read, live: queued → processing → a result.
    assert {e["study_id"] for e in events} == {study.pk}
    assert events[0]["status"] == "queued"
    assert "processing" in [e["status"] for e in events]
    assert events[-1]["status"] in RESULT_STATUSES, (events, _tail(worker_log))
    assert study.status == events[-1]["status"]
    assert diagnosis.route == "chest_xray"  # the real chest X-ray, read by the shipped router
    # And it is on her worklist.
    client = Client()
    client.force_login(world.alice)
    caseload = client.get(f"/h/{world.a.slug}/").content.decode()
    assert f"/h/{world.a.slug}/studies/{study.pk}/" in caseload


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no worker log)"
