"""Who may read and write which conversation. Views and consumers come here; none of them
filters chat data on its own.

Within the active hospital scope:
* a doctor sees the conversations with the patients currently assigned to them;
* a patient user sees the conversations about their own patient record(s), with the doctors
  currently assigned to them;
* hospital admins do not read chats (unless they are also a party).

A conversation exists only while the doctor is assigned (CareAssignment): when the assignment
ends, both sides lose access, open sockets included. Anything else answers 404.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, F, Max, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404

from apps.accounts.tenancy import Tenant
from apps.studies.access import active_doctor_ids, cares_for
from apps.studies.models import CareAssignment, Patient

from .models import Conversation


def _assignment_exists() -> Exists:
    return Exists(
        CareAssignment.objects.filter(
            hospital=OuterRef("hospital"), patient=OuterRef("patient"), doctor=OuterRef("doctor")
        )
    )


def visible_conversations(tenant: Tenant) -> QuerySet[Conversation]:
    base = Conversation.objects.filter(hospital=tenant.hospital).filter(_assignment_exists())
    parties = Q(pk__in=[])
    if tenant.is_doctor:
        parties |= Q(doctor=tenant.user)
    if tenant.is_patient:
        parties |= Q(patient__user=tenant.user)
    return base.filter(parties)


def get_conversation(tenant: Tenant, pk: int) -> Conversation:
    conversation = visible_conversations(tenant).select_related("patient", "doctor").filter(pk=pk).first()
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def inbox(tenant: Tenant) -> QuerySet[Conversation]:
    """Visible conversations with ``unread`` (messages to this user not read yet) and
    ``last_activity``, the most recently active first. One query, whatever the count."""
    return (
        visible_conversations(tenant)
        .select_related("patient", "doctor")
        .annotate(
            unread=Count(
                "messages", filter=Q(messages__read_at__isnull=True) & ~Q(messages__sender=tenant.user), distinct=True
            ),
            last_activity=Coalesce(Max("messages__created_at"), F("created_at")),
        )
        .order_by("-last_activity", "-pk")
    )


def is_party(conversation: Conversation, user: Any) -> bool:
    return user.pk == conversation.doctor_id or (user.pk is not None and user.pk == conversation.patient.user_id)


def assignment_active(conversation: Conversation) -> bool:
    """The conversation's doctor still cares for its patient (``apps.studies.access.cares_for``)."""
    return cares_for(conversation.doctor, conversation.patient)


def can_use(tenant: Tenant, conversation: Conversation) -> bool:
    """The user may read and write this conversation now (party, right role, assignment active)."""
    if conversation.hospital_id != tenant.hospital.pk:
        return False
    as_doctor = tenant.is_doctor and conversation.doctor_id == tenant.user.pk
    as_patient = tenant.is_patient and conversation.patient.user_id == tenant.user.pk
    return (as_doctor or as_patient) and assignment_active(conversation)


def startable_patients(tenant: Tenant) -> QuerySet[Patient]:
    """Patients a doctor may start a conversation with: assigned to them and with a login."""
    if not tenant.is_doctor:
        return Patient.objects.none()
    return (
        Patient.objects.filter(hospital=tenant.hospital, user__isnull=False, care_assignments__doctor=tenant.user)
        .exclude(conversations__doctor=tenant.user)
        .distinct()
    )


def startable_doctors(tenant: Tenant) -> list[tuple[Patient, Any]]:
    """(own patient record, doctor) pairs a patient may start a conversation with."""
    if not tenant.is_patient:
        return []
    pairs = []
    existing = set(
        Conversation.objects.filter(hospital=tenant.hospital, patient__user=tenant.user).values_list(
            "patient_id", "doctor_id"
        )
    )
    for assignment in CareAssignment.objects.filter(
        hospital=tenant.hospital, patient__user=tenant.user, doctor_id__in=active_doctor_ids(tenant.hospital)
    ).select_related("patient", "doctor"):
        if (assignment.patient_id, assignment.doctor_id) not in existing:
            pairs.append((assignment.patient, assignment.doctor))
    return pairs
