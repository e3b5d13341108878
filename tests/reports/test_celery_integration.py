"""Signing a report renders its PDF through a REAL Celery worker on the local Redis and PostgreSQL.

The report is signed the way the portal signs it (``sign_report``: commit, then the task is sent
to Redis on commit); a separate ``celery worker`` process, pointed at the same test database,
media folder and encryption key, renders the PDF with WeasyPrint and stores it encrypted.
Sending the task again (a redelivery) leaves the same single PDF.
"""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import pytest
from django_scopes import scopes_disabled
from pypdf import PdfReader

from apps.reports import services
from apps.reports.models import PdfStatus, Report
from apps.reports.tasks import render_report_pdf
from apps.studies.models import Study, StudyStatus
from apps.studies.storage import read_encrypted, store_encrypted
from tests.celery_worker import celery_worker, dedicated_broker
from tests.factories import png_bytes

pytestmark = [pytest.mark.integration]

TIMEOUT_S = 90
TEST_KEY = base64.b64encode(b"reports-itest-key-32-bytes-long!").decode()


@pytest.fixture
def broker(redis_url):
    """This process's Celery app sends (not eager) to this run's own reports queue."""
    with dedicated_broker(redis_url, "reports") as broker:
        yield broker


@pytest.fixture
def worker(transactional_db, postgres_required, broker, settings, tmp_path):
    settings.FILE_ENCRYPTION_KEYS = {"ritest": base64.b64decode(TEST_KEY)}
    settings.FILE_ENCRYPTION_ACTIVE_KEY_ID = "ritest"
    with celery_worker("reports-itest", broker, "ritest", TEST_KEY, tmp_path) as running:
        yield running


def _wait_until(predicate, what, proc, log_path):
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"the worker exited ({proc.returncode}) waiting for {what}:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.3)
    import redis

    from imagemedix.celery import app

    waiting = redis.Redis.from_url(app.conf.broker_url).llen("default")
    pytest.fail(
        f"timed out waiting for {what} ({waiting} message(s) still queued in Redis); "
        f"worker log:\n{log_path.read_text(errors='replace')[-4000:]}"
    )


def _runs(log_path: Path) -> int:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return sum(1 for line in text.splitlines() if "reports.tasks.render_report_pdf[" in line and "succeeded" in line)


def _study_without_ai_read(world) -> Study:
    """A stored study created directly (submit_study would also send the AI read to the worker)."""
    data = png_bytes((128, 128), seed=11)
    blob = store_encrypted(data, folder=f"studies/h{world.a.pk}", suffix=".png")
    with scopes_disabled():
        return Study.objects.create(
            hospital=world.a, patient=world.paul_record, uploaded_by=world.alice, status=StudyStatus.DONE,
            source_format="png", original_filename="scan.png", width=128, height=128,
            file_name=blob.name, file_sha256=blob.sha256, file_key_id=blob.key_id, file_size=blob.size,
        )  # fmt: skip


def test_real_worker_renders_the_signed_report(worker, world):
    proc, log_path = worker
    study = _study_without_ai_read(world)
    with scopes_disabled():
        report = services.start_report(study, world.alice)
        services.save_draft(report, world.alice, findings="Worker findings.", impression="Fine.", final_label="normal")
        services.sign_report(report, world.alice)  # commits; the task goes to Redis on commit

    def ready():
        with scopes_disabled():
            row = Report.objects.filter(pk=report.pk).values("pdf_status", "pdf_name", "pdf_sha256").first()
        return row if row["pdf_status"] != PdfStatus.PENDING else None

    row = _wait_until(ready, f"the PDF of report {report.pk}", proc, log_path)
    assert row["pdf_status"] == PdfStatus.READY, log_path.read_text(errors="replace")[-4000:]
    text = " ".join(
        page.extract_text() for page in PdfReader(io.BytesIO(read_encrypted(row["pdf_name"], row["pdf_sha256"]))).pages
    )
    assert "Paul Potter" in text and "Worker findings." in text

    # A redelivery of the same task renders nothing new.
    _wait_until(lambda: _runs(log_path) >= 1, "the first run to be logged", proc, log_path)
    render_report_pdf.delay(hospital_id=report.hospital_id, report_id=report.pk)
    _wait_until(lambda: _runs(log_path) >= 2, "the second run", proc, log_path)
    with scopes_disabled():
        again = Report.objects.get(pk=report.pk)
    assert (again.pdf_name, again.pdf_sha256) == (row["pdf_name"], row["pdf_sha256"])
