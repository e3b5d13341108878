"""REST API v1 routes (apps/studies/api_urls.py) in the tenancy matrix.

API rules: anonymous → 401 (token auth answers with a challenge), patient user → 403 (every
endpoint is for clinicians), non-member (Dora in hospital A) → 404, a patient or study the
caller may not see → 404. Alice is Paul's doctor; Bob is a doctor of A assigned to nobody.
"""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from tests.factories import make_study, png_bytes
from tests.routes import Route


def _study_of_paul(w):
    return {"pk": make_study(w.paul_record, w.alice).pk}


def _patient_paul(w):
    return {"pk": w.paul_record.pk}


def _upload_for_paul(w):
    return {"patient": str(w.paul_record.pk), "file": SimpleUploadedFile("chest.png", png_bytes(), "image/png")}


def _new_patient(w):
    return {"mrn": "A-9999", "given_name": "Nina", "family_name": "New", "birth_date": "1990-01-02", "sex": "F"}


def _lists_paul(response, w):
    mrns = [row["mrn"] for row in response.json()["results"]]
    assert mrns == [w.paul_record.mrn], mrns


def _lists_one_study(response, w):
    body = response.json()
    assert body["count"] == 1 and body["results"][0]["patient"] == w.paul_record.pk, body


API = {"anon": 401, "patient": 403, "other_hospital_doctor": 404}

ROUTES = [
    # Lists answer 200 to an unassigned doctor, but empty (checked in tests/portal/test_api.py).
    Route("api:patient-list", **API, unassigned_doctor=200, owner=("alice", 200), check=_lists_paul),
    Route("api:patient-list", "POST", data=_new_patient, json=True, **API, unassigned_doctor=201, owner=("carol", 201)),
    Route("api:patient-detail", kwargs=_patient_paul, **API, unassigned_doctor=404, owner=("alice", 200)),
    Route(
        "api:patient-detail", kwargs=_patient_paul, **API, unassigned_doctor=404, owner=("carol", 200), label="admin"
    ),
    Route(
        "api:patient-studies",
        kwargs=lambda w: {"pk": make_study(w.paul_record, w.alice).patient_id},
        **API,
        unassigned_doctor=404,
        owner=("alice", 200),
        check=_lists_one_study,
    ),
    Route(
        "api:study-list",
        kwargs=lambda w: make_study(w.paul_record, w.alice) and {},
        **API,
        unassigned_doctor=200,
        owner=("alice", 200),
        check=_lists_one_study,
    ),
    # Bob may upload, but not for a patient outside his caseload: 400 "choose a patient...".
    Route("api:study-list", "POST", data=_upload_for_paul, **API, unassigned_doctor=400, owner=("alice", 201)),
    Route("api:study-detail", kwargs=_study_of_paul, **API, unassigned_doctor=404, owner=("alice", 200)),
    Route("api:study-image", kwargs=_study_of_paul, **API, unassigned_doctor=404, owner=("alice", 200)),
]
