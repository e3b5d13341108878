"""The hospital admin's integration pages: credentials (created, shown once, listed, revoked,
audited) and the unmatched queue (link the study to a patient, or create the patient)."""

from __future__ import annotations

import re

import pytest
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.integration.credentials import authenticate
from apps.integration.models import DicomStudy, IntegrationCredential
from apps.studies.models import Patient, Study, StudyStatus
from tests.celery_worker import dedicated_broker

from .conftest import bearer
from .helpers import chest_xray_dicom, uids

pytestmark = pytest.mark.django_db


def test_a_credential_is_shown_once_and_then_only_by_its_key_id(client, world):
    client.force_login(world.carol)
    response = client.post("/h/st-mary/admin-tools/integration/", {"name": "Orthanc, radiology"})
    assert response.status_code == 201
    page = response.content.decode()
    token = re.search(r"Authorization: Bearer (imx_[0-9a-f]+\.[\w-]+)", page).group(1)
    with scopes_disabled():
        credential = IntegrationCredential.objects.get()
        assert authenticate(f"Bearer {token}") == credential
        assert (credential.hospital, credential.created_by) == (world.a, world.carol)
        assert AuditEvent.objects.filter(action="integration.credential_create", actor=world.carol).count() == 1
    assert response["Cache-Control"] == "no-store"
    assert "/dicomweb/h/st-mary/studies" in page

    listing = client.get("/h/st-mary/admin-tools/integration/").content.decode()
    assert credential.key_id in listing
    assert token.split(".", 1)[1] not in listing  # the secret is never shown again


def test_a_nameless_credential_is_refused_with_a_message(client, world):
    client.force_login(world.carol)
    response = client.post("/h/st-mary/admin-tools/integration/", {"name": "  "})
    assert response.status_code == 400
    with scopes_disabled():
        assert not IntegrationCredential.objects.exists()


def test_revoking_a_credential_closes_it_at_once(client, world, pacs, stow):
    client.force_login(world.carol)
    response = client.post(f"/h/st-mary/admin-tools/integration/{pacs.a.credential.pk}/revoke/")
    assert response.status_code == 302
    assert stow([chest_xray_dicom()], auth=bearer(pacs.a)).status_code == 401
    with scopes_disabled():
        assert IntegrationCredential.objects.get(pk=pacs.a.credential.pk).revoked_by == world.carol
        assert AuditEvent.objects.filter(action="integration.credential_revoke", actor=world.carol).count() == 1


def test_an_admin_cannot_revoke_another_hospitals_credential(client, world, pacs):
    client.force_login(world.carol)
    response = client.post(f"/h/st-mary/admin-tools/integration/{pacs.b.credential.pk}/revoke/")
    assert response.status_code == 404
    with scopes_disabled():
        assert IntegrationCredential.objects.get(pk=pacs.b.credential.pk).is_active


def test_every_use_of_a_credential_is_audited(world, pacs, stow, client):
    stow([chest_xray_dicom()], auth=bearer(pacs.a))
    client.get("/dicomweb/h/st-mary/studies", **bearer(pacs.a))
    with scopes_disabled():
        uses = AuditEvent.objects.filter(hospital=world.a, detail__credential=pacs.a.credential.key_id)
        assert {"integration.stow", "dicomweb.search"} <= set(uses.values_list("action", flat=True))
        assert IntegrationCredential.objects.get(pk=pacs.a.credential.pk).last_used_at is not None


def _unmatched(stow, pacs, **dicom) -> tuple[DicomStudy, bytes]:
    data = chest_xray_dicom(patient_id="EXT-77", patient_name="DOE^JANE", birth_date="19800315", sex="F", **dicom)
    assert stow([data], auth=bearer(pacs.a)).status_code == 200
    with scopes_disabled():
        return DicomStudy.objects.get(study_instance_uid=uids(data)[0]), data


def test_the_unmatched_queue_lists_what_the_pacs_sent(client, world, pacs, stow):
    dicom_study, _ = _unmatched(stow, pacs)
    client.force_login(world.carol)
    page = client.get("/h/st-mary/admin-tools/integration/unmatched/").content.decode()
    assert "EXT-77" in page and "DOE^JANE" in page
    detail = client.get(f"/h/st-mary/admin-tools/integration/unmatched/{dicom_study.pk}/").content.decode()
    # The new-patient form starts from what was sent.
    assert 'value="EXT-77"' in detail and 'value="Doe"' in detail and 'value="Jane"' in detail
    assert 'value="1980-03-15"' in detail


def test_linking_files_the_study_under_the_patient_and_queues_the_ai_read(
    client, world, pacs, stow, django_capture_on_commit_callbacks, media_files, redis_url
):
    import redis

    dicom_study, _ = _unmatched(stow, pacs)
    assert len([f for f in media_files() if "/integration/" in f]) == 1
    client.force_login(world.carol)
    with dedicated_broker(redis_url, "integration-pages") as broker:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                f"/h/st-mary/admin-tools/integration/unmatched/{dicom_study.pk}/",
                {"action": "link", "patient": world.paul_record.pk},
            )
        queued = redis.Redis.from_url(broker.url).llen(broker.queue)
    assert response.status_code == 302
    assert queued == 1  # the AI read of the filed instance was sent
    with scopes_disabled():
        dicom_study.refresh_from_db()
        assert (dicom_study.patient, dicom_study.matched_by) == (world.paul_record, world.carol)
        instance = dicom_study.instances.get()
        assert instance.study.patient == world.paul_record
        assert instance.study.status == StudyStatus.QUEUED
        assert instance.held_file_name == ""
        assert AuditEvent.objects.filter(action="integration.study_linked", actor=world.carol).count() == 1
    assert [f for f in media_files() if "/integration/" in f] == []  # the held copy went on commit
    # Later instances of the same study follow it to Paul.
    more = chest_xray_dicom(patient_id="EXT-77", study_uid=dicom_study.study_instance_uid)
    assert stow([more], auth=bearer(pacs.a)).status_code == 200
    with scopes_disabled():
        assert Study.objects.filter(patient=world.paul_record, dicom_instance__dicom_study=dicom_study).count() == 2


def test_creating_the_patient_uses_the_new_patient_checks(client, world, pacs, stow):
    dicom_study, _ = _unmatched(stow, pacs)
    client.force_login(world.carol)
    url = f"/h/st-mary/admin-tools/integration/unmatched/{dicom_study.pk}/"
    fields = {"new-given_name": "Jane", "new-family_name": "Doe", "new-birth_date": "1980-03-15", "new-sex": "F"}
    taken = client.post(url, {"action": "create", "new-mrn": "A-0001", **fields})
    assert taken.status_code == 400
    assert "already exists" in taken.content.decode()

    response = client.post(url, {"action": "create", "new-mrn": "EXT-77", **fields})
    assert response.status_code == 302
    with scopes_disabled():
        patient = Patient.objects.get(hospital=world.a, mrn="EXT-77")
        assert patient.full_name == "Jane Doe"
        assert DicomStudy.objects.get(pk=dicom_study.pk).patient == patient
        assert Study.objects.filter(patient=patient).count() == 1
    # The next study with that Patient ID is matched on arrival.
    stow([chest_xray_dicom(patient_id="EXT-77")], auth=bearer(pacs.a))
    with scopes_disabled():
        assert Study.objects.filter(patient=patient).count() == 2


def test_a_resolved_study_leaves_the_queue(client, world, pacs, stow):
    dicom_study, _ = _unmatched(stow, pacs)
    client.force_login(world.carol)
    url = f"/h/st-mary/admin-tools/integration/unmatched/{dicom_study.pk}/"
    client.post(url, {"action": "link", "patient": world.paul_record.pk})
    assert client.get(url).status_code == 404
    assert client.post(url, {"action": "link", "patient": world.other_a.pk}).status_code == 404


def test_linking_to_another_hospitals_patient_is_refused(client, world, pacs, stow):
    dicom_study, _ = _unmatched(stow, pacs)
    client.force_login(world.carol)
    response = client.post(
        f"/h/st-mary/admin-tools/integration/unmatched/{dicom_study.pk}/",
        {"action": "link", "patient": world.bea_record.pk},
    )
    assert response.status_code == 400
    with scopes_disabled():
        assert DicomStudy.objects.get(pk=dicom_study.pk).patient is None


def test_a_post_without_an_action_says_what_to_do(client, world, pacs, stow):
    dicom_study, _ = _unmatched(stow, pacs)
    client.force_login(world.carol)
    response = client.post(f"/h/st-mary/admin-tools/integration/unmatched/{dicom_study.pk}/", {})
    assert response.status_code == 400
    assert "link the study" in response.content.decode()


def test_a_study_sent_here_by_mistake_is_discarded_with_a_reason(
    client, world, pacs, stow, media_files, django_capture_on_commit_callbacks
):
    dicom_study, data = _unmatched(stow, pacs)
    client.force_login(world.carol)
    url = f"/h/st-mary/admin-tools/integration/unmatched/{dicom_study.pk}/"
    no_reason = client.post(url, {"action": "discard", "reason": " "})
    assert no_reason.status_code == 400
    assert "why" in no_reason.content.decode()
    nul = client.post(url, {"action": "discard", "reason": "wrong\x00route"})
    assert nul.status_code == 400
    assert "NUL character" in nul.content.decode()

    with django_capture_on_commit_callbacks(execute=True):  # the held file goes on commit
        response = client.post(url, {"action": "discard", "reason": "Riverside patient, wrong PACS route"})
    assert response.status_code == 302
    with scopes_disabled():
        assert not DicomStudy.objects.filter(pk=dicom_study.pk).exists()
        event = AuditEvent.objects.get(action="integration.study_discarded")
        assert (event.actor, event.detail["patient_id_sent"], event.detail["reason"]) == (
            world.carol,
            "EXT-77",
            "Riverside patient, wrong PACS route",
        )
        assert not Patient.objects.filter(mrn="EXT-77").exists()
    assert [f for f in media_files() if "/integration/" in f] == []
