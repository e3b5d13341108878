"""Bad input to the DICOMweb routes gets a clear 4xx, never a 500."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django_scopes import scopes_disabled
from PIL import Image

from apps.accounts.models import AuditEvent
from apps.integration.models import DicomInstance, DicomStudy

from .conftest import bearer
from .helpers import chest_xray_dicom, uids


@pytest.mark.parametrize(
    "query",
    [
        "limit=%C2%B2",  # '²' is a digit to str.isdigit() but not to int()
        "offset=%C2%B2",
        "offset=99999999999999999999999",  # past PostgreSQL's bigint OFFSET
        "PatientID=A%00B",  # PostgreSQL refuses NUL in a string
        "StudyDate=2024%00-",
        "SOPInstanceUID=1%00,2",
    ],
)
def test_qido_refuses_values_it_cannot_search_by_with_400(world, pacs, stow, client, query):
    assert stow([chest_xray_dicom(patient_id="A-0001")], auth=bearer(pacs.a)).status_code == 200
    for level in ("studies", "instances"):
        response = client.get(f"/dicomweb/h/{world.a.slug}/{level}?{query}", **bearer(pacs.a))
        assert response.status_code == 400, (level, response.content[:300])
        assert response.json()["error"]


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("limit=99999999999999999999999", 1),  # capped at the maximum
        ("AccessionNumber=" + "x" * 5000, 0),
        ("00100020=%E2%9C%93", 0),
        ("00100020=A-0001", 1),
    ],
)
def test_qido_odd_but_harmless_values_are_searched(world, pacs, stow, client, query, found):
    assert stow([chest_xray_dicom(patient_id="A-0001")], auth=bearer(pacs.a)).status_code == 200
    for level in ("studies", "instances"):
        response = client.get(f"/dicomweb/h/{world.a.slug}/{level}?{query}", **bearer(pacs.a))
        assert response.status_code == 200, (level, response.content[:300])
        assert len(response.json()) == found


def test_stow_with_a_content_length_of_other_digits_is_400(world, pacs, stow):
    response = stow([chest_xray_dicom()], auth={**bearer(pacs.a), "CONTENT_LENGTH": "\u00b2"})
    assert response.status_code == 400
    assert response.json()["error"] == "The Content-Length is not a number."


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_retrieve_and_search_routes_answer_only_get(world, pacs, stow, client, method):
    data = chest_xray_dicom(patient_id="A-0001")
    assert stow([data], auth=bearer(pacs.a)).status_code == 200
    study, series, instance = uids(data)
    base = f"/dicomweb/h/{world.a.slug}/studies/{study}"
    for path in (
        base,
        f"{base}/instances",
        f"{base}/series/{series}/instances/{instance}",
        f"{base}/series/{series}/instances/{instance}/rendered",
    ):
        response = getattr(client, method)(path, **bearer(pacs.a))
        assert response.status_code == 405, (path, response.status_code)
        assert response["Allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "attributes",
    [
        {"patient_id": "A-00\x0001"},
        {"patient_name": "POT\x00TER^PAUL"},
        {"StudyDescription": "Chest\x00PA"},
        {"AccessionNumber": "AC\x00C"},
        {"Modality": "D\x00X"},
    ],
    ids=["patient-id", "patient-name", "description", "accession", "modality"],
)
def test_an_instance_with_a_nul_inside_a_text_attribute_is_a_failed_sop_item(world, pacs, stow, attributes):
    response = stow([chest_xray_dicom(**attributes)], auth=bearer(pacs.a))
    assert response.status_code == 409
    assert "NUL character" in response["Warning"]
    with scopes_disabled():
        assert DicomInstance.objects.count() == 0


def test_nul_padding_at_the_end_is_dropped(world, pacs, stow):
    response = stow([chest_xray_dicom(StudyDescription="Chest PA\x00")], auth=bearer(pacs.a))
    assert response.status_code == 200
    with scopes_disabled():
        assert DicomStudy.objects.get().description == "Chest PA"


def test_a_part_header_that_is_not_utf8_is_a_failed_part_not_a_500(world, pacs, stow):
    body = b"--x\r\nContent-Type: \xff\xfe\r\n\r\nxx\r\n--x--\r\n"
    response = stow(
        None, auth=bearer(pacs.a), content_type='multipart/related; type="application/dicom"; boundary=x', body=body
    )
    assert response.status_code == 409
    assert "is not DICOM" in response["Warning"]


@pytest.mark.parametrize("rendition", ["study", "instance", "rendered"])
def test_a_tampered_instance_is_a_409_without_its_bytes_and_audited(world, pacs, stow, client, rendition):
    data = chest_xray_dicom(patient_id="A-0001")
    assert stow([data], auth=bearer(pacs.a)).status_code == 200
    study, series, instance = uids(data)
    with scopes_disabled():
        stored = DicomInstance.objects.select_related("study").get(sop_instance_uid=instance).study
    with default_storage.open(stored.file_name, "rb") as fh:
        blob = bytearray(fh.read())
    blob[-5] ^= 0xFF
    default_storage.delete(stored.file_name)
    default_storage.save(stored.file_name, io.BytesIO(bytes(blob)))
    base = f"/dicomweb/h/{world.a.slug}/studies/{study}"
    path = {
        "study": base,
        "instance": f"{base}/series/{series}/instances/{instance}",
        "rendered": f"{base}/series/{series}/instances/{instance}/rendered",
    }[rendition]
    response = client.get(path, **bearer(pacs.a))
    assert response.status_code == 409
    assert response["Cache-Control"] == "private, no-store"
    assert "integrity check" in response.json()["error"]
    with scopes_disabled():
        [event] = AuditEvent.objects.filter(action="dicomweb.integrity_error")
        assert (event.object_id, event.detail["sop_instance_uid"]) == (str(stored.pk), instance)
        assert event.detail["credential"] == pacs.a.credential.key_id
        assert not AuditEvent.objects.filter(action__startswith="dicomweb.retrieve").exists()


def test_a_reason_that_quotes_a_line_break_from_the_instance_stays_one_warning_line(world, pacs, stow):
    data = chest_xray_dicom().replace(b"1.2.840.10008.1.2.1\x00", b"1.2.8\r\nX-Evil: 1.23 ", 1)  # same length
    response = stow([data], auth=bearer(pacs.a))
    assert response.status_code == 409
    assert response["Warning"] == '299 ImageMedix "Transfer syntax 1.2.8 X-Evil: 1.23 is not supported."'
    assert not response.has_header("X-Evil")


@pytest.mark.parametrize(("accept", "image_format"), [("image/png", "PNG"), ("image/jpeg", "JPEG"), ("*/*", "PNG")])
def test_rendered_instance_is_the_asked_image_type_private_and_audited(world, pacs, stow, client, accept, image_format):
    data = chest_xray_dicom(patient_id="A-0001")
    assert stow([data], auth=bearer(pacs.a)).status_code == 200
    study, series, instance = uids(data)
    path = f"/dicomweb/h/{world.a.slug}/studies/{study}/series/{series}/instances/{instance}/rendered"
    response = client.get(path, HTTP_ACCEPT=accept, **bearer(pacs.a))
    assert response.status_code == 200
    assert response["Content-Type"] == f"image/{image_format.lower()}"
    assert response["Cache-Control"] == "private, no-store"
    assert Image.open(io.BytesIO(response.content)).format == image_format
    with scopes_disabled():
        [event] = AuditEvent.objects.filter(action="dicomweb.retrieve_rendered")
        assert event.detail["sop_instance_uid"] == instance
    assert client.get(path, HTTP_ACCEPT="text/html", **bearer(pacs.a)).status_code == 406
