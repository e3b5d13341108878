"""The audit trail: uploads, views of patients and studies, image downloads and caseload changes
write an event with actor, hospital and client IP, through the pages and the API; refused
requests write no "view" event; and events cannot be changed or deleted."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts import audit
from apps.accounts.models import AuditEvent
from apps.studies.models import CareAssignment
from tests.factories import make_study, png_bytes

BACKEND = "django.contrib.auth.backends.ModelBackend"
IP = "203.0.113.7"


def events(action: str, **filters):
    with scopes_disabled():
        return list(AuditEvent.objects.filter(action=action, **filters).select_related("actor", "hospital"))


def the_event(action: str, **filters) -> AuditEvent:
    found = events(action, **filters)
    assert len(found) == 1, f"expected one {action!r} event, found {len(found)}"
    return found[0]


def assert_event(event: AuditEvent, *, actor, hospital, obj=None) -> None:
    assert event.actor == actor
    assert event.hospital == hospital
    assert event.ip_address == IP
    if obj is not None:
        assert event.object_type == obj._meta.label_lower and event.object_id == str(obj.pk)


@pytest.fixture
def as_alice(client, world):
    client.force_login(world.alice, backend=BACKEND)
    client.defaults["REMOTE_ADDR"] = IP
    return client


def page(world, name, **kwargs):
    return reverse(f"studies:{name}", kwargs={"hospital_slug": world.a.slug, **kwargs})


def api(world, name, **kwargs):
    return reverse(f"api:{name}", kwargs={"hospital_slug": world.a.slug, **kwargs})


# --- uploads ----------------------------------------------------------------------------------------


def test_page_upload_is_audited(as_alice, world):
    response = as_alice.post(
        page(world, "upload"),
        {"patient": world.paul_record.pk, "image": SimpleUploadedFile("chest.png", png_bytes())},
    )
    assert response.status_code == 302
    event = the_event("study.upload")
    assert_event(event, actor=world.alice, hospital=world.a)
    assert event.object_type == "studies.study" and event.detail["format"] == "png"
    assert len(event.detail["sha256"]) == 64


def test_api_upload_is_audited(as_alice, world):
    response = as_alice.post(
        api(world, "study-list"),
        {"patient": world.paul_record.pk, "file": SimpleUploadedFile("chest.png", png_bytes())},
    )
    assert response.status_code == 201
    event = the_event("study.upload")
    assert_event(event, actor=world.alice, hospital=world.a)
    assert event.object_id == str(response.json()["id"])


# --- views and downloads ------------------------------------------------------------------------------


def test_patient_view_is_audited(as_alice, world):
    assert as_alice.get(page(world, "patient_detail", pk=world.paul_record.pk)).status_code == 200
    assert_event(the_event("patient.view"), actor=world.alice, hospital=world.a, obj=world.paul_record)
    assert as_alice.get(api(world, "patient-detail", pk=world.paul_record.pk)).status_code == 200
    api_event = the_event("patient.view", detail__via="api")
    assert_event(api_event, actor=world.alice, hospital=world.a, obj=world.paul_record)


def test_study_view_is_audited(as_alice, world):
    study = make_study(world.paul_record, world.alice)
    assert as_alice.get(page(world, "study_detail", pk=study.pk)).status_code == 200
    assert_event(the_event("study.view"), actor=world.alice, hospital=world.a, obj=study)
    assert as_alice.get(api(world, "study-detail", pk=study.pk)).status_code == 200
    assert_event(the_event("study.view", detail__via="api"), actor=world.alice, hospital=world.a, obj=study)


def test_image_download_is_audited(as_alice, world):
    study = make_study(world.paul_record, world.alice)
    assert as_alice.get(page(world, "study_image", pk=study.pk)).status_code == 200
    assert_event(the_event("study.view_image"), actor=world.alice, hospital=world.a, obj=study)
    assert as_alice.get(api(world, "study-image", pk=study.pk)).status_code == 200
    assert_event(the_event("study.download"), actor=world.alice, hospital=world.a, obj=study)


def test_list_reads_are_audited(as_alice, world):
    assert as_alice.get(api(world, "patient-list")).status_code == 200
    assert as_alice.get(api(world, "study-list")).status_code == 200
    assert_event(the_event("patient.list"), actor=world.alice, hospital=world.a)
    assert_event(the_event("study.list"), actor=world.alice, hospital=world.a)


def test_refused_reads_write_no_view_event(client, world):
    study = make_study(world.paul_record, world.alice)
    client.force_login(world.bob, backend=BACKEND)
    assert client.get(page(world, "study_detail", pk=study.pk)).status_code == 404
    assert client.get(api(world, "study-detail", pk=study.pk)).status_code == 404
    assert client.get(api(world, "patient-detail", pk=world.paul_record.pk)).status_code == 404
    assert client.get(api(world, "study-image", pk=study.pk)).status_code == 404
    assert events("study.view") == events("patient.view") == events("study.download") == []


# --- caseload changes ---------------------------------------------------------------------------------


def test_care_assign_and_unassign_are_audited(client, world):
    client.force_login(world.carol, backend=BACKEND)
    client.defaults["REMOTE_ADDR"] = IP
    response = client.post(page(world, "assignments"), {"patient": world.other_a.pk, "doctor": world.bob.pk})
    assert response.status_code == 302
    with scopes_disabled():
        assignment = CareAssignment.objects.get(patient=world.other_a, doctor=world.bob)
    event = the_event("care.assign", object_id=str(assignment.pk))
    assert_event(event, actor=world.carol, hospital=world.a)
    assert event.detail == {"doctor": world.bob.pk, "patient": world.other_a.pk}

    response = client.post(page(world, "assignment_remove", pk=assignment.pk), {"confirm": "yes"})
    assert response.status_code == 302
    event = the_event("care.unassign")
    assert_event(event, actor=world.carol, hospital=world.a, obj=world.other_a)
    assert event.detail == {"doctor": world.bob.pk}


def test_events_stay_in_their_hospital(world):
    """The conftest assignments wrote one care.assign per hospital; each scope sees its own."""
    from apps.accounts.tenancy import tenant_scope

    with tenant_scope(world.b):
        assert list(AuditEvent.objects.values_list("action", flat=True)) == ["care.assign"]
    with tenant_scope(world.a):
        assert {e.hospital_id for e in AuditEvent.objects.all()} == {world.a.pk}


# --- append-only --------------------------------------------------------------------------------------


def test_events_cannot_be_changed_or_deleted(world):
    event = audit.record("patient.view", hospital=world.a, actor=world.alice, obj=world.paul_record, ip=IP)
    event.action = "nothing.happened"
    with pytest.raises(RuntimeError, match="append-only"):
        event.save()
    with pytest.raises(RuntimeError, match="append-only"):
        event.delete()
    with scopes_disabled():
        with pytest.raises(RuntimeError, match="append-only"):
            AuditEvent.objects.filter(pk=event.pk).update(action="nothing.happened")
        with pytest.raises(RuntimeError, match="append-only"):
            AuditEvent.objects.filter(pk=event.pk).delete()
        assert AuditEvent.objects.get(pk=event.pk).action == "patient.view"
