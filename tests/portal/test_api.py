"""REST API v1: token and session auth, scoping like the pages, pagination, patient creation,
study listing/filtering/download, and an OpenAPI schema that validates without warnings.
(The per-route status matrix is in tests/test_tenancy_matrix.py.)"""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts import tokens
from apps.accounts.models import AuditEvent, Membership
from apps.studies.models import Patient, StudyStatus
from tests.auth import APIClient
from tests.factories import PatientFactory, jpeg_bytes, make_study, png_bytes

BACKEND = "django.contrib.auth.backends.ModelBackend"


def url(world, name, hospital=None, **kwargs):
    return reverse(f"api:{name}", kwargs={"hospital_slug": (hospital or world.a).slug, **kwargs})


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {tokens.create(user)[1]}")
    return client


@pytest.fixture
def api(world):
    client = APIClient()
    client.force_login(world.alice, backend=BACKEND)
    return client


# --- authentication --------------------------------------------------------------------------------


def test_token_auth_gives_the_same_scoped_view(world):
    client = token_client(world.alice)
    response = client.get(url(world, "patient-list"))
    assert response.status_code == 200
    assert [p["mrn"] for p in response.json()["results"]] == ["A-0001"]
    # The same token is no key to another hospital.
    assert client.get(url(world, "patient-list", hospital=world.b)).status_code == 404


def test_bad_token_is_401_and_no_credentials_is_401(world):
    client = APIClient()
    assert client.get(url(world, "patient-list")).status_code == 401
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get(url(world, "patient-list"))
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"


def test_unknown_hospital_and_non_member_look_the_same(world):
    client = token_client(world.dora)
    a = client.get(url(world, "patient-list"))
    missing = client.get(reverse("api:patient-list", kwargs={"hospital_slug": "no-such-hospital"}))
    assert a.status_code == missing.status_code == 404
    assert a.json() == missing.json()


def test_deactivated_membership_loses_access(world):
    client = token_client(world.alice)
    with scopes_disabled():
        Membership.objects.filter(user=world.alice, hospital=world.a).update(is_active=False)
    assert client.get(url(world, "patient-list")).status_code == 404


def test_inactive_user_token_is_refused(world):
    client = token_client(world.alice)
    world.alice.is_active = False
    world.alice.save()
    assert client.get(url(world, "patient-list")).status_code == 401


def test_session_post_needs_csrf(world):
    """Session-authenticated writes are CSRF-protected (tokens are not cookies, so need none)."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(world.carol, backend=BACKEND)
    body = {"mrn": "A-7777", "given_name": "C", "family_name": "Srf", "birth_date": "2000-01-01"}
    assert client.post(url(world, "patient-list"), body, format="json").status_code == 403
    assert token_client(world.carol).post(url(world, "patient-list"), body, format="json").status_code == 201


# --- patients ----------------------------------------------------------------------------------------


def test_patient_lists_follow_the_caseload(world):
    def mrns(user):
        return [p["mrn"] for p in token_client(user).get(url(world, "patient-list")).json()["results"]]

    assert mrns(world.alice) == ["A-0001"]
    assert mrns(world.bob) == []
    assert mrns(world.carol) == ["A-0002", "A-0001"]  # Owens, Potter (family name order)
    assert token_client(world.dora).get(url(world, "patient-list")).status_code == 404  # not a member of A
    assert token_client(world.dora).get(url(world, "patient-list", hospital=world.b)).json()["count"] == 1


def test_patient_list_is_paginated_and_searchable(world):
    with scopes_disabled():
        for i in range(30):
            PatientFactory(hospital=world.a, mrn=f"P-{i:03d}", family_name=f"Zed{i:02d}")
    client = token_client(world.carol)
    first = client.get(url(world, "patient-list")).json()
    assert first["count"] == 32 and len(first["results"]) == 25 and first["next"]
    second = client.get(first["next"]).json()
    assert len(second["results"]) == 7 and second["next"] is None
    found = client.get(url(world, "patient-list"), {"q": "zed07"}).json()
    assert [p["mrn"] for p in found["results"]] == ["P-007"]
    nul = client.get(url(world, "patient-list"), {"q": "zed\x00"})
    assert nul.status_code == 400 and "NUL" in nul.json()["error"]


def test_patient_detail_hides_the_login_link(world, api):
    body = api.get(url(world, "patient-detail", pk=world.paul_record.pk)).json()
    assert body["mrn"] == "A-0001" and body["full_name"] == "Paul Potter"
    assert "user" not in body and "hospital" not in body


def test_another_hospitals_patient_is_404_even_by_id(world, api):
    assert api.get(url(world, "patient-detail", pk=world.bea_record.pk)).status_code == 404
    assert api.get(url(world, "patient-studies", pk=world.bea_record.pk)).status_code == 404
    assert api.get(url(world, "patient-detail", pk=999999)).status_code == 404


def test_doctor_creates_a_patient_and_takes_them_on(world):
    client = token_client(world.bob)
    body = {"mrn": " A-0500 ", "given_name": "Nia", "family_name": "North", "birth_date": "1970-03-04", "sex": "F"}
    response = client.post(url(world, "patient-list"), body, format="json")
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["mrn"] == "A-0500" and created["birth_date"] == "1970-03-04"
    with scopes_disabled():
        patient = Patient.objects.get(pk=created["id"])
        assert patient.hospital == world.a
        assert patient.care_assignments.filter(doctor=world.bob).exists()
        assert AuditEvent.objects.filter(action="patient.create", actor=world.bob, hospital=world.a).exists()
    assert client.get(url(world, "patient-detail", pk=patient.pk)).status_code == 200
    # The MRN is unique in the hospital: a second one is a 400 with a message, not a 500.
    again = client.post(url(world, "patient-list"), {**body, "mrn": "A-0500"}, format="json")
    assert again.status_code == 400 and "already exists" in again.json()["mrn"][0]


def test_admin_creates_a_patient_without_a_caseload(world):
    body = {"mrn": "A-0600", "given_name": "Ola", "family_name": "Owl", "birth_date": "1999-09-09"}
    response = token_client(world.carol).post(url(world, "patient-list"), body, format="json")
    assert response.status_code == 201 and response.json()["sex"] == "U"
    with scopes_disabled():
        assert not Patient.objects.get(mrn="A-0600").care_assignments.exists()


def test_same_mrn_in_another_hospital_is_fine(world):
    body = {"mrn": "A-0001", "given_name": "Dup", "family_name": "Licate", "birth_date": "1990-01-01"}
    assert token_client(world.dora).post(url(world, "patient-list", hospital=world.b), body).status_code == 201


def test_patient_create_validates_fields(world):
    client = token_client(world.carol)
    response = client.post(url(world, "patient-list"), {"mrn": "", "birth_date": "yesterday"}, format="json")
    assert response.status_code == 400
    assert {"mrn", "given_name", "family_name", "birth_date"} <= set(response.json())


def test_patient_role_is_refused_everywhere(world):
    """Patients get no token (tokens.create refuses); their browser session is refused too."""
    client = APIClient()
    client.force_login(world.paul, backend=BACKEND)
    study = make_study(world.paul_record, world.alice)
    for name, kwargs in [
        ("patient-list", {}),
        ("patient-detail", {"pk": world.paul_record.pk}),
        ("patient-studies", {"pk": world.paul_record.pk}),
        ("study-list", {}),
        ("study-detail", {"pk": study.pk}),
        ("study-image", {"pk": study.pk}),
    ]:
        response = client.get(url(world, name, **kwargs))
        assert response.status_code == 403, name
        assert "doctors and hospital administrators" in response.json()["detail"]


# --- studies -----------------------------------------------------------------------------------------


def test_study_lists_and_filters(world, api):
    s1 = make_study(world.paul_record, world.alice)
    s2 = make_study(world.paul_record, world.alice, data=jpeg_bytes(), filename="b.jpg")
    make_study(world.other_a, world.carol)
    with scopes_disabled():
        type(s1).objects.filter(pk=s1.pk).update(status=StudyStatus.DONE)
    listing = api.get(url(world, "study-list")).json()
    assert [s["id"] for s in listing["results"]] == [s2.pk, s1.pk]  # newest first, Olga's hidden
    assert api.get(url(world, "study-list"), {"status": "done"}).json()["count"] == 1
    assert api.get(url(world, "study-list"), {"patient": world.other_a.pk}).json()["count"] == 0
    assert api.get(url(world, "study-list"), {"patient": "x"}).status_code == 400  # not an id (test_api_scale.py)
    nested = api.get(url(world, "patient-studies", pk=world.paul_record.pk)).json()
    assert nested["count"] == 2
    assert token_client(world.carol).get(url(world, "study-list")).json()["count"] == 3
    assert token_client(world.bob).get(url(world, "study-list")).json()["count"] == 0


def test_study_detail_fields(world, api):
    study = make_study(world.paul_record, world.alice, filename="chest.png")
    body = api.get(url(world, "study-detail", pk=study.pk)).json()
    assert body["patient"] == world.paul_record.pk and body["patient_mrn"] == "A-0001"
    assert body["status"] == "queued" and body["status_display"]
    assert body["original_filename"] == "chest.png" and body["source_format"] == "png"
    assert body["uploaded_by"] == "Dr Alice Adams"
    assert body["file_sha256"] == study.file_sha256
    assert "diagnosis" in body  # a summary once the diagnosis app provides one; null until then
    assert "file_name" not in body and "file_key_id" not in body


def test_study_of_unassigned_patient_is_404(world, api):
    study = make_study(world.other_a, world.carol)
    assert api.get(url(world, "study-detail", pk=study.pk)).status_code == 404
    assert api.get(url(world, "study-image", pk=study.pk)).status_code == 404


def test_unassigning_revokes_api_access(world, api):
    from apps.studies import services

    study = make_study(world.paul_record, world.alice)
    assert api.get(url(world, "study-detail", pk=study.pk)).status_code == 200
    with scopes_disabled():
        services.unassign_doctor(world.paul_record, world.alice, actor=world.carol)
    assert api.get(url(world, "study-detail", pk=study.pk)).status_code == 404
    assert api.get(url(world, "patient-detail", pk=world.paul_record.pk)).status_code == 404


def test_image_download_returns_the_original(world, api):
    data = png_bytes((40, 30), seed=3)
    study = make_study(world.paul_record, world.alice, data=data)
    response = api.get(url(world, "study-image", pk=study.pk))
    assert response.status_code == 200 and response.content == data
    assert response["Content-Type"] == "image/png" and response["Cache-Control"] == "private, no-store"
    assert "attachment" in response["Content-Disposition"]


def test_tampered_image_is_refused_not_a_500(world, api):
    study = make_study(world.paul_record, world.alice)
    with default_storage.open(study.file_name, "rb") as fh:
        blob = bytearray(fh.read())
    blob[-5] ^= 0xFF
    default_storage.delete(study.file_name)
    default_storage.save(study.file_name, __import__("io").BytesIO(bytes(blob)))
    response = api.get(url(world, "study-image", pk=study.pk))
    assert response.status_code == 409 and "integrity" in response.json()["error"]
    default_storage.delete(study.file_name)
    assert api.get(url(world, "study-image", pk=study.pk)).status_code == 409


def test_created_at_is_iso8601(world, api):
    make_study(world.paul_record, world.alice)
    created = api.get(url(world, "study-list")).json()["results"][0]["created_at"]
    assert dt.datetime.fromisoformat(created.replace("Z", "+00:00"))


# --- schema and docs ---------------------------------------------------------------------------------


def test_schema_validates_without_warnings(tmp_path):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    text = target.read_text()
    for path in ["patients/", "patients/{id}/", "patients/{id}/studies/", "studies/", "studies/{id}/image/"]:
        assert f"/api/v1/h/{{hospital_slug}}/{path}:" in text, path
    assert "multipart/form-data" in text and "knoxApiToken" in text


def test_schema_and_docs_are_served(client, db):
    schema = client.get(reverse("api-schema"))
    assert schema.status_code == 200 and b"openapi" in schema.content
    docs = client.get(reverse("api-docs"))
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "swagger-ui" in page and "drf_spectacular_sidecar" in page  # served locally, no CDN
    assert "cdn.jsdelivr" not in page and "unpkg.com" not in page


def test_study_carries_the_ai_read_summary_once_there_is_one(world, api):
    from tests.diagnosis.helpers import make_diagnosis

    study = make_study(world.paul_record, world.alice)
    assert api.get(url(world, "study-detail", pk=study.pk)).json()["diagnosis"] is None
    make_diagnosis(study, label="viral_pneumonia")
    summary = api.get(url(world, "study-detail", pk=study.pk)).json()["diagnosis"]
    assert summary["label"] == "viral_pneumonia" and summary["refused"] is False
    assert summary["probabilities"]["viral_pneumonia"] == pytest.approx(0.8)
    listed = api.get(url(world, "study-list")).json()["results"][0]["diagnosis"]
    assert listed["label"] == "viral_pneumonia"


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_no_endpoint_changes_or_deletes_records(world, method):
    """The API reads and creates; changes go through the pages' services. Never a 500."""
    client = token_client(world.carol)
    study = make_study(world.paul_record, world.alice)
    for name, kwargs in [
        ("patient-list", {}),
        ("patient-detail", {"pk": world.paul_record.pk}),
        ("patient-studies", {"pk": world.paul_record.pk}),
        ("study-list", {}),
        ("study-detail", {"pk": study.pk}),
        ("study-image", {"pk": study.pk}),
    ]:
        assert getattr(client, method)(url(world, name, **kwargs)).status_code == 405, (method, name)


def test_create_api_token_command_prints_a_working_token(world, capsys):
    call_command("create_api_token", world.alice.email)
    key = capsys.readouterr().out.strip()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(url(world, "study-list")).status_code == 200


def test_duplicate_mrn_that_slips_past_the_check_is_still_a_400(world, monkeypatch):
    """Two clinicians registering the same MRN at once: the database constraint answers, as a 400."""
    from apps.studies.serializers import PatientCreateSerializer

    monkeypatch.setattr(PatientCreateSerializer, "validate_mrn", lambda self, value: value)
    body = {"mrn": "A-0001", "given_name": "Twin", "family_name": "Potter", "birth_date": "1980-01-01"}
    response = token_client(world.carol).post(url(world, "patient-list"), body, format="json")
    assert response.status_code == 400 and "already exists" in response.json()["mrn"][0]
    with scopes_disabled():
        assert Patient.objects.filter(mrn="A-0001").count() == 1
