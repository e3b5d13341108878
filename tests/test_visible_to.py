"""``visible_to(tenant)``: one rule per scoped model, from one vocabulary (apps/studies/access.py),
and one source of truth for the care relation (the CareAssignment row).

The table below says, for each persona of hospital A (see tests/conftest.py), which rows of each
model they see. The rows: Paul (cared for by Alice) with a study, an AI read and its shadow read,
a signed report, a conversation with Alice and a message, and the DICOM study and instance the
PACS sent for his study; Olga (nobody's patient) with a study and an AI read; an unmatched DICOM
study with its held instance; Bea in hospital B with a study (Dora's patient) and a DICOM study.
Every persona's memberships are rows too.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django_scopes import scopes_disabled

from apps.accounts.models import Invitation, Membership, Role
from apps.accounts.services import deactivate_member, invite
from apps.accounts.tenancy import resolve_tenant, tenant_scope
from apps.chat import notifications
from apps.chat.models import Conversation, Message, Notification, NotificationKind
from apps.chat.services import send_message, start_conversation
from apps.diagnosis.models import Diagnosis, ShadowResult
from apps.integration.models import DicomInstance, DicomStudy
from apps.reports.models import Report
from apps.studies.access import cares_for
from apps.studies.models import CareAssignment, Patient, Study
from apps.studies.services import unassign_doctor

from .factories import make_study
from .reports.helpers import make_diagnosis, write_report

pytestmark = pytest.mark.django_db


@pytest.fixture
def rows(world):
    w = world
    study_paul = make_study(w.paul_record, w.alice)
    study_olga = make_study(w.other_a, w.carol)
    study_bea = make_study(w.bea_record, w.dora)
    with scopes_disabled():
        dx_paul, dx_olga = make_diagnosis(study_paul), make_diagnosis(study_olga)
        make_diagnosis(study_bea)
    report = write_report(study_paul, w.alice, sign=True)
    with scopes_disabled():
        conversation = start_conversation(w.paul_record, w.alice, actor=w.paul)
        message = send_message(conversation, w.paul, "Hello doctor")  # notifies Alice
        notifications.notify(hospital_id=w.b.pk, user_id=w.paul.pk, kind=NotificationKind.NEW_MESSAGE, title="In B")
        # Paul heard about his signed report, Alice about his message; Bob and Carol about nothing.
        to_paul = set(Notification.objects.filter(user=w.paul, hospital=w.a).values_list("pk", flat=True))
        to_alice = set(Notification.objects.filter(user=w.alice).values_list("pk", flat=True))
        assert to_paul and to_alice
        care = CareAssignment.objects.get(patient=w.paul_record, doctor=w.alice)
        invitation = invite(w.a, email="newcomer@example.org", role=Role.DOCTOR, actor=w.carol)
        invite(w.b, email="elsewhere@example.org", role=Role.DOCTOR, actor=None)
        shadow = ShadowResult.objects.create(
            hospital=w.a, diagnosis=dx_paul, model_version=dx_paul.specialist_version, route=dx_paul.route
        )
        dicom_paul = DicomStudy.objects.create(hospital=w.a, study_instance_uid="1.2.3.1", patient=w.paul_record)
        dicom_unmatched = DicomStudy.objects.create(hospital=w.a, study_instance_uid="1.2.3.2")
        DicomStudy.objects.create(hospital=w.b, study_instance_uid="1.2.3.3", patient=w.bea_record)
        instance_paul = _instance(dicom_paul, "1.2.3.1.1", study=study_paul)
        held = _instance(dicom_unmatched, "1.2.3.2.1", study=None)
        members_a = set(Membership.objects.filter(hospital=w.a).values_list("pk", flat=True))
    return SimpleNamespace(
        study_paul=study_paul,
        study_olga=study_olga,
        dx_paul=dx_paul,
        dx_olga=dx_olga,
        report=report,
        conversation=conversation,
        message=message,
        to_paul=to_paul,
        to_alice=to_alice,
        care=care,
        invitation=invitation,
        shadow=shadow,
        dicom_paul=dicom_paul,
        dicom_unmatched=dicom_unmatched,
        instance_paul=instance_paul,
        held=held,
        members_a=members_a,
    )


def _instance(dicom_study, sop_instance_uid, *, study):
    return DicomInstance.objects.create(
        hospital=dicom_study.hospital,
        dicom_study=dicom_study,
        series_instance_uid=f"{dicom_study.study_instance_uid}.0",
        sop_instance_uid=sop_instance_uid,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.1.1",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        study=study,
        held_file_name="" if study else f"held/{sop_instance_uid}.dcm.enc",  # rows only: no file is read
    )


MODELS = (
    Patient,
    CareAssignment,
    Study,
    Diagnosis,
    ShadowResult,
    Report,
    Conversation,
    Message,
    Notification,
    Invitation,
    Membership,
    DicomStudy,
    DicomInstance,
)


def seen(user, hospital) -> dict[type, set[int]]:
    """Primary keys of every model's rows that ``user`` sees in ``hospital``."""
    tenant = resolve_tenant(user, hospital.slug)
    with tenant_scope(hospital):
        return {model: set(model.objects.visible_to(tenant).values_list("pk", flat=True)) for model in MODELS}


def expected(**seen_rows: set[int]) -> dict[type, set[int]]:
    """Nothing of any model, except the rows named by model (``study={...}``)."""
    by_name = {model.__name__.lower(): model for model in MODELS}
    return {model: set() for model in MODELS} | {by_name[name]: pks for name, pks in seen_rows.items()}


def test_each_persona_sees_exactly_their_rows(world, rows):
    w, r = world, rows
    assert seen(w.alice, w.a) == expected(
        patient={w.paul_record.pk},
        careassignment={r.care.pk},
        study={r.study_paul.pk},
        diagnosis={r.dx_paul.pk},
        report={r.report.pk},
        conversation={r.conversation.pk},
        message={r.message.pk},
        notification=r.to_alice,
        dicomstudy={r.dicom_paul.pk},
        dicominstance={r.instance_paul.pk},
    )
    assert seen(w.bob, w.a) == expected()  # a doctor of the hospital who cares for nobody
    assert seen(w.carol, w.a) == expected(  # the hospital admin: all clinical rows, invitations, members; no chats
        invitation={r.invitation.pk},
        membership=r.members_a,
        patient={w.paul_record.pk, w.other_a.pk},
        careassignment={r.care.pk},
        study={r.study_paul.pk, r.study_olga.pk},
        diagnosis={r.dx_paul.pk, r.dx_olga.pk},
        shadowresult={r.shadow.pk},
        report={r.report.pk},
        dicomstudy={r.dicom_paul.pk, r.dicom_unmatched.pk},
        dicominstance={r.instance_paul.pk, r.held.pk},
    )
    assert seen(w.paul, w.a) == expected(  # the patient: own record, signed report, own chat
        patient={w.paul_record.pk},
        report={r.report.pk},
        conversation={r.conversation.pk},
        message={r.message.pk},
        notification=r.to_paul,
    )


def test_patients_never_see_drafts(world, rows):
    with scopes_disabled():
        draft = write_report(make_study(world.paul_record, world.alice), world.alice)
    with tenant_scope(world.a):
        assert not Report.objects.visible_to(resolve_tenant(world.paul, world.a.slug)).filter(pk=draft.pk).exists()
        assert Report.objects.visible_to(resolve_tenant(world.alice, world.a.slug)).filter(pk=draft.pk).exists()


def test_the_assignment_row_is_the_only_source_of_the_care_relation(world, rows):
    """Unassigning takes away everything the care relation gave, on every model, at once; the
    patient keeps their own signed report."""
    w, r = world, rows
    with scopes_disabled():
        unassign_doctor(w.paul_record, w.alice, actor=w.carol)
    assert seen(w.alice, w.a) == expected(notification=r.to_alice)  # her own notifications stay hers
    assert seen(w.paul, w.a) == expected(patient={w.paul_record.pk}, report={r.report.pk}, notification=r.to_paul)


def test_a_doctor_who_left_cares_for_nobody_even_with_the_assignment_row_left(world, rows):
    """The membership is switched off, the assignment row stays (for the record): the patient's
    chat with that doctor closes, and the admin still sees the row to clean it up."""
    w, r = world, rows
    with scopes_disabled():
        membership = Membership.objects.get(user=w.alice, hospital=w.a, role=Role.DOCTOR)
        deactivate_member(membership, actor=w.carol)
        assert CareAssignment.objects.filter(pk=r.care.pk).exists()
        assert not cares_for(w.alice, w.paul_record)
    assert seen(w.paul, w.a)[Conversation] == set()
    assert seen(w.paul, w.a)[Message] == set()
    assert seen(w.carol, w.a)[CareAssignment] == {r.care.pk}


def test_nothing_crosses_hospitals(world, rows):
    """Dora (hospital B) sees only B's rows; no row of hospital A is in any of her sets."""
    w = world
    in_b = seen(w.dora, w.b)
    with scopes_disabled():
        for model, pks in in_b.items():
            assert all(h == w.b.pk for h in model.objects.filter(pk__in=pks).values_list("hospital_id", flat=True))
        assert in_b[Patient] == {w.bea_record.pk}
        assert in_b[Study] == set(Study.objects.filter(hospital=w.b).values_list("pk", flat=True))
