"""Upload abuse through both doors: the upload page (``studies:upload``, a normal form POST) and
the API (``POST /api/v1/h/<slug>/studies/``). Every bad file gets a 4xx with a readable
message, never a 500, and leaves no Study row, no audit "upload" event and no file behind.
Good PNG, JPEG and DICOM files are accepted and stored encrypted."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django.utils.html import escape
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.studies.models import Study
from tests.factories import dicom_bytes, png_bytes

from .test_validation import BAD_FILES, GOOD_FILES

BACKEND = "django.contrib.auth.backends.ModelBackend"
DOORS = ["page", "api"]


def _upload(client, world, door: str, name: str, data: bytes, patient=None):
    patient = patient or world.paul_record
    upload = SimpleUploadedFile(name, data, content_type="application/octet-stream")
    if door == "page":
        url = reverse("studies:upload", kwargs={"hospital_slug": world.a.slug})
        return client.post(url, {"patient": patient.pk, "image": upload})
    url = reverse("api:study-list", kwargs={"hospital_slug": world.a.slug})
    return client.post(url, {"patient": patient.pk, "file": upload})


def _message(response, door: str) -> str:
    """The refusal as the user sees it."""
    if door == "api":
        body = response.json()
        assert set(body) == {"error"}, body
        return body["error"]
    errors = response.context["form"].errors
    assert errors, "the form shows no error"
    message = " ".join(str(e) for errs in errors.values() for e in errs)
    assert escape(errors.get("image", [message])[0]) in response.content.decode()
    return message


def _nothing_left(media_files) -> None:
    with scopes_disabled():
        assert Study.objects.count() == 0
        assert not AuditEvent.objects.filter(action="study.upload").exists()
    assert media_files() == []


@pytest.fixture
def alice_client(client, world):
    client.force_login(world.alice, backend=BACKEND)
    return client


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_refused_and_leaves_nothing(alice_client, world, media_files, door, case):
    builder, name, _ = BAD_FILES[case]
    response = _upload(alice_client, world, door, name, builder())
    assert response.status_code == 400, (response.status_code, response.content[:300])
    message = _message(response, door)
    assert len(message) > 10 and "Traceback" not in message
    _nothing_left(media_files)


@pytest.mark.parametrize("door", DOORS)
def test_over_size_file_is_refused_and_leaves_nothing(alice_client, world, media_files, settings, door):
    settings.UPLOAD_MAX_BYTES = 4096
    data = png_bytes((200, 200))
    assert len(data) > settings.UPLOAD_MAX_BYTES
    response = _upload(alice_client, world, door, "big.png", data)
    assert response.status_code == 400
    assert "larger than the 4 KB limit" in _message(response, door)
    _nothing_left(media_files)


@pytest.mark.parametrize("door", DOORS)
def test_patient_outside_the_caseload_is_refused(client, world, media_files, door):
    """Bob (no caseload) and Alice uploading for another hospital's patient store nothing."""
    client.force_login(world.bob, backend=BACKEND)
    assert _upload(client, world, door, "a.png", png_bytes()).status_code == 400
    client.force_login(world.alice, backend=BACKEND)
    assert _upload(client, world, door, "a.png", png_bytes(), patient=world.bea_record).status_code == 400
    assert _upload(client, world, door, "a.png", png_bytes(), patient=world.other_a).status_code == 400
    _nothing_left(media_files)


def test_api_upload_without_a_file_or_patient_says_so(alice_client, world, media_files):
    url = reverse("api:study-list", kwargs={"hospital_slug": world.a.slug})
    response = alice_client.post(url, {"patient": world.paul_record.pk})
    assert response.status_code == 400 and "file" in response.json()["error"]
    response = alice_client.post(url, {"file": SimpleUploadedFile("a.png", png_bytes())})
    assert response.status_code == 400 and "patient" in response.json()["error"]
    response = alice_client.post(url, {"patient": "1 OR 1=1", "file": SimpleUploadedFile("a.png", png_bytes())})
    assert response.status_code == 400 and "positive whole number" in response.json()["error"]
    response = alice_client.post(url, data=b"not multipart", content_type="application/json")
    assert response.status_code == 415
    _nothing_left(media_files)


def test_page_upload_without_a_file_says_so(alice_client, world, media_files):
    url = reverse("studies:upload", kwargs={"hospital_slug": world.a.slug})
    response = alice_client.post(url, {"patient": world.paul_record.pk})
    assert response.status_code == 400
    assert "Image file: choose an image file to upload." in _message(response, "page")
    _nothing_left(media_files)


@pytest.mark.parametrize("door", DOORS)
@pytest.mark.parametrize("case", sorted(GOOD_FILES))
def test_good_file_is_accepted_and_stored_encrypted(alice_client, world, media_files, door, case):
    builder, name, fmt, (width, height) = GOOD_FILES[case]
    data = builder()
    response = _upload(alice_client, world, door, name, data)
    with scopes_disabled():
        study = Study.objects.get()
    if door == "api":
        assert response.status_code == 201, response.content
        body = response.json()
        assert body["id"] == study.pk and body["source_format"] == fmt and body["patient"] == world.paul_record.pk
    else:
        assert response.status_code == 302
        assert response["Location"] == reverse(
            "studies:study_detail", kwargs={"hospital_slug": world.a.slug, "pk": study.pk}
        )
    assert (study.source_format, study.width, study.height) == (fmt, width, height)
    assert study.original_filename == name and study.uploaded_by == world.alice
    files = media_files()
    assert len(files) == 1
    with open(files[0], "rb") as fh:
        stored = fh.read()
    assert data not in stored and stored[:5] == b"IMXE1"


@pytest.mark.parametrize("door", DOORS)
def test_a_nul_inside_a_window_name_is_dropped_not_a_500(alice_client, world, media_files, door):
    data = dicom_bytes(WindowCenter=[40], WindowWidth=[400], WindowCenterWidthExplanation=["SO\x00FT"])
    response = _upload(alice_client, world, door, "ct.dcm", data)
    assert response.status_code in (201, 302), response.content[:300]
    with scopes_disabled():
        assert Study.objects.get().dicom_display["windows"][0]["name"] == "SOFT"
