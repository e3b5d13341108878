"""Every encrypted download goes through ``serve_encrypted`` and answers alike: the study image
on its page and through the API, the Grad-CAM heatmap and the signed report's PDF.

* 200: the original bytes, Content-Type, Content-Disposition (inline for what a page shows,
  attachment for a download), ``Cache-Control: private, no-store``, ``X-Content-Type-Options:
  nosniff``, and one audit event;
* 409 when the stored file was tampered with or is missing: a clear message (JSON in the API),
  none of the file, and ``<kind>.integrity_error`` audited.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.studies.storage import read_encrypted
from tests.auth import APIClient
from tests.diagnosis.helpers import make_diagnosis
from tests.factories import make_study, png_bytes
from tests.pipeline.test_decode_dicom import _dicom
from tests.reports.helpers import signed_report

BACKEND = "django.contrib.auth.backends.ModelBackend"


@dataclass
class Download:
    url: str
    stored_name: str
    stored_sha256: str
    obj: Any
    content_type: str
    disposition: str
    action: str
    integrity_action: str
    api: bool = False


def _study_page_image(world):
    study = make_study(world.paul_record, world.alice, data=png_bytes((40, 30), seed=3))
    url = reverse("studies:study_image", args=["st-mary", study.pk])
    return Download(url, study.file_name, study.file_sha256, study, "image/png", "inline", "study.view_image",
                    "study.integrity_error")  # fmt: skip


def _study_api_image(world):
    study = make_study(world.paul_record, world.alice, data=png_bytes((40, 30), seed=4))
    url = reverse("api:study-image", kwargs={"hospital_slug": "st-mary", "pk": study.pk})
    return Download(url, study.file_name, study.file_sha256, study, "image/png", "attachment", "study.download",
                    "study.integrity_error", api=True)  # fmt: skip


def _heatmap(world):
    study = make_study(world.paul_record, world.alice)
    diagnosis = make_diagnosis(study)
    url = reverse("diagnosis:overlay", kwargs={"hospital_slug": "st-mary", "study_pk": study.pk})
    return Download(url, diagnosis.overlay_name, diagnosis.overlay_sha256, diagnosis, "image/png", "inline",
                    "diagnosis.view_overlay", "diagnosis.integrity_error")  # fmt: skip


def _report_pdf(world):
    report = signed_report(world.paul_record, world.alice)
    url = reverse("reports:pdf", args=["st-mary", report.pk])
    return Download(url, report.pdf_name, report.pdf_sha256, report, "application/pdf", "attachment",
                    "report.download", "report.integrity_error")  # fmt: skip


DOWNLOADS = {"study-page-image": _study_page_image, "study-api-image": _study_api_image, "heatmap": _heatmap,
             "report-pdf": _report_pdf}  # fmt: skip


@pytest.fixture(params=list(DOWNLOADS))
def download(request, world) -> Download:
    return DOWNLOADS[request.param](world)


@pytest.fixture
def as_alice(world):
    client = APIClient()
    client.force_login(world.alice, backend=BACKEND)
    return client


def _events(action: str, obj: Any) -> list[AuditEvent]:
    with scopes_disabled():
        return list(AuditEvent.objects.filter(action=action, object_id=str(obj.pk)))


def _tamper(name: str) -> None:
    with default_storage.open(name, "rb") as fh:
        blob = bytearray(fh.read())
    blob[-5] ^= 0xFF
    default_storage.delete(name)
    default_storage.save(name, io.BytesIO(bytes(blob)))


def test_a_download_sends_the_file_with_the_same_headers_and_one_audit_event(download, as_alice, world):
    response = as_alice.get(download.url)
    assert response.status_code == 200
    assert response.content == read_encrypted(download.stored_name, download.stored_sha256)
    assert response["Content-Type"] == download.content_type
    assert response["Content-Disposition"].startswith(f'{download.disposition}; filename="')
    assert response["Cache-Control"] == "private, no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    [event] = _events(download.action, download.obj)
    assert event.actor == world.alice and event.hospital == world.a
    assert _events(download.integrity_action, download.obj) == []


@pytest.mark.parametrize("damage", ["tampered", "missing"])
def test_a_damaged_file_is_a_clear_409_without_its_bytes_and_audited(download, as_alice, world, damage):
    original = read_encrypted(download.stored_name, download.stored_sha256)
    if damage == "tampered":
        _tamper(download.stored_name)
    else:
        default_storage.delete(download.stored_name)
    response = as_alice.get(download.url)
    assert response.status_code == 409
    assert response["Cache-Control"] == "private, no-store"
    assert original not in response.content
    if download.api:
        assert "failed its integrity check" in response.json()["error"]
    elif download.content_type == "application/pdf":  # the report page a patient understands
        assert "could not be opened" in response.content.decode()
    else:
        assert "failed its integrity check" in response.content.decode()
    [event] = _events(download.integrity_action, download.obj)
    assert event.actor == world.alice and event.hospital == world.a
    assert _events(download.action, download.obj) == []


def test_a_dicom_study_is_shown_on_its_page_as_a_png(world, as_alice):
    gradient = np.tile(np.linspace(0, 4000, 64, dtype=np.float32), (64, 1))
    study = make_study(world.paul_record, world.alice, data=_dicom(gradient), filename="cxr.dcm")
    response = as_alice.get(reverse("studies:study_image", args=["st-mary", study.pk]))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response.content.startswith(b"\x89PNG")
    assert response["Content-Disposition"] == f'inline; filename="study-{study.pk}.png"'
    # The API sends the original DICOM as a download.
    response = as_alice.get(reverse("api:study-image", kwargs={"hospital_slug": "st-mary", "pk": study.pk}))
    assert response["Content-Type"] == "application/dicom" and pydicom.dcmread(io.BytesIO(response.content))
