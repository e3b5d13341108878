"""Clinician pages of apps/studies (caseload, patients, upload, studies) and the hospital admin's
pages (audit log, members, assignments), for tests/test_tenancy_matrix.py.

Who may do what:
* caseload, upload form, new patient: any doctor or hospital admin (Bob's caseload is empty,
  so he gets 200 with an empty list; his upload for Paul is refused with a 400);
* patient, study, image: only the patient's doctors and the hospital admins (Bob: 404);
* audit log, members, assignments: hospital admins only (doctors: 403).
"""

from __future__ import annotations

import itertools
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile

from tests.factories import MembershipFactory, UserFactory, dicom_bytes, make_study, png_bytes
from tests.routes import Route

_seq = itertools.count()


def _paul(w: Any) -> dict[str, Any]:
    return {"pk": w.paul_record.pk}


def _paul_study(w: Any) -> dict[str, Any]:
    return {"pk": make_study(w.paul_record, w.alice).pk}


def _paul_dicom_study(w: Any) -> dict[str, Any]:
    return {"pk": make_study(w.paul_record, w.alice, dicom_bytes(), "chest.dcm").pk}


def _check_values_png(response: Any, w: Any) -> None:
    assert response["Content-Type"] == "image/png" and response.content.startswith(b"\x89PNG")


def _check_search(response: Any, w: Any) -> None:
    assert [r["id"] for r in response.json()["results"]] == [w.paul_record.pk]  # her caseload only


def _new_patient(w: Any) -> dict[str, Any]:
    return {
        "mrn": f"MX-{next(_seq):05d}",
        "given_name": "Nina",
        "family_name": "North",
        "birth_date": "1990-02-03",
        "sex": "F",
    }


def _upload(w: Any) -> dict[str, Any]:
    return {"patient": w.paul_record.pk, "image": SimpleUploadedFile("chest.png", png_bytes(), "image/png")}


def _new_member(w: Any) -> dict[str, Any]:
    return {"email": f"member{next(_seq)}@example.org", "role": "doctor"}


def _invitation_of_a(w: Any) -> dict[str, Any]:
    from apps.accounts.services import invite

    return {"pk": invite(w.a, email=f"invitee{next(_seq)}@example.org", role="doctor", actor=w.carol).pk}


def _membership_of_a(w: Any) -> dict[str, Any]:
    user = UserFactory(email=f"leaver{next(_seq)}@example.org")
    return {"pk": MembershipFactory(user=user, hospital=w.a, role="doctor").pk}


def _assign_olga(w: Any) -> dict[str, Any]:
    return {"patient": w.other_a.pk, "doctor": w.alice.pk}


def _assignment_of_a(w: Any) -> dict[str, Any]:
    from apps.studies.services import assign_doctor

    return {"pk": assign_doctor(w.other_a, w.alice).pk}


def _confirmed(w: Any) -> dict[str, Any]:
    return {"confirm": "yes"}


ADMIN_ONLY = {"patient": 403, "unassigned_doctor": 403, "other_hospital_doctor": 404}

ROUTES = [
    # GET /h/st-mary/ — a clinician's caseload (Bob's is empty but his own).
    Route("studies:caseload", unassigned_doctor=200),
    # GET/POST /h/st-mary/patients/new/ — any clinician registers a patient.
    Route("studies:patient_create", unassigned_doctor=200),
    Route("studies:patient_create", method="POST", data=_new_patient, unassigned_doctor=302, owner=("alice", 302)),
    # GET /h/st-mary/patients/<pk>/ — Paul's record, for his doctor Alice.
    Route("studies:patient_detail", kwargs=_paul),
    Route("studies:patient_detail", kwargs=_paul, owner=("carol", 200), label="hospital admin"),
    # GET/POST /h/st-mary/upload/ — Bob has nobody to upload for: his POST for Paul is a 400.
    Route("studies:upload", unassigned_doctor=200),
    Route("studies:upload", method="POST", data=_upload, unassigned_doctor=400, owner=("alice", 302)),
    # GET /h/st-mary/studies/<pk>/ and its image.
    Route("studies:study_detail", kwargs=_paul_study),
    Route("studies:study_image", kwargs=_paul_study),
    # GET /h/st-mary/patients/search.json?q= — the upload page's patient search (one's caseload).
    Route("studies:patient_search", unassigned_doctor=200, check=_check_search),
    # POST /h/st-mary/studies/<pk>/entered-in-error/ — a doctor caring for Paul marks his study.
    Route(
        "studies:entered_in_error",
        method="POST",
        kwargs=_paul_study,
        data=lambda w: {"reason": "Wrong patient."},
        owner=("alice", 302),
    ),
    Route(
        "studies:entered_in_error",
        label="admin",
        method="POST",
        kwargs=_paul_study,
        data=lambda w: {"reason": "Wrong patient."},
        owner=("carol", 403),
    ),
    # GET /h/st-mary/studies/<pk>/image/values.png — a DICOM's stored values, for the viewer.
    Route("studies:study_image_values", kwargs=_paul_dicom_study, check=_check_values_png),
    # Hospital admin pages.
    Route("studies:audit_log", owner=("carol", 200), **ADMIN_ONLY),
    Route("studies:audit_export", owner=("carol", 200), **ADMIN_ONLY),
    Route("studies:members", owner=("carol", 200), **ADMIN_ONLY),
    Route("studies:members", method="POST", data=_new_member, owner=("carol", 302), **ADMIN_ONLY),
    Route(
        "studies:member_deactivate",
        method="POST",
        kwargs=_membership_of_a,
        data=_confirmed,
        owner=("carol", 302),
        **ADMIN_ONLY,
    ),
    # Without confirm=yes: the page that asks first.
    Route(
        "studies:member_deactivate",
        label="asks first",
        method="POST",
        kwargs=_membership_of_a,
        owner=("carol", 200),
        **ADMIN_ONLY,
    ),
    Route("studies:member_unlock", method="POST", kwargs=_membership_of_a, owner=("carol", 302), **ADMIN_ONLY),
    Route("studies:second_factor_policy", method="POST", data=lambda w: {}, owner=("carol", 302), **ADMIN_ONLY),
    Route("studies:invitation_revoke", method="POST", kwargs=_invitation_of_a, owner=("carol", 302), **ADMIN_ONLY),
    Route("studies:assignments", owner=("carol", 200), **ADMIN_ONLY),
    Route("studies:assignments", method="POST", data=_assign_olga, owner=("carol", 302), **ADMIN_ONLY),
    Route(
        "studies:assignment_remove",
        method="POST",
        kwargs=_assignment_of_a,
        data=_confirmed,
        owner=("carol", 302),
        **ADMIN_ONLY,
    ),
    Route(
        "studies:assignment_remove",
        label="asks first",
        method="POST",
        kwargs=_assignment_of_a,
        owner=("carol", 200),
        **ADMIN_ONLY,
    ),
]
