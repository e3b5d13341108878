"""Fetching chat data for views and consumers, always through ``Conversation.objects.visible_to``
(the rule is in ``apps/chat/models.py``, built on ``apps/studies/access.py``):

* a doctor sees the conversations with the patients they care for;
* a patient user sees the conversations about their own patient record(s), with the doctors
  caring for them now;
* hospital admins do not read chats (unless they are also a party).

A conversation is usable only while its doctor cares for its patient (CareAssignment, active
doctor): when that ends, both sides lose access, open sockets included. Anything else answers 404.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, F, Max, Q, QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404

from apps.accounts.tenancy import Tenant
from apps.studies.access import care_rows, cares_for
from apps.studies.models import Patient

from .models import Conversation


def get_conversation(tenant: Tenant, pk: int) -> Conversation:
    conversation = usable_conversation(tenant, pk)
    if conversation is None:
        raise Http404("No such conversation.")
    return conversation


def usable_conversation(tenant: Tenant, pk: int) -> Conversation | None:
    """The conversation if the user may read and write it now, else None."""
    return Conversation.objects.visible_to(tenant).select_related("patient", "doctor", "hospital").filter(pk=pk).first()


def inbox(tenant: Tenant) -> QuerySet[Conversation]:
    """Visible conversations with ``unread`` (messages to this user not read yet) and
    ``last_activity``, the most recently active first. One query, whatever the count."""
    return (
        Conversation.objects.visible_to(tenant)
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


def startable_patients(tenant: Tenant) -> QuerySet[Patient]:
    """Patients a doctor may start a conversation with: cared for by them, with a login, and no
    conversation with them yet."""
    if not tenant.is_doctor:
        return Patient.objects.none()
    mine = care_rows(tenant.hospital).filter(doctor_id=tenant.user.pk).values("patient_id")
    return (
        Patient.objects.visible_to(tenant)
        .filter(pk__in=mine, user__isnull=False)
        .exclude(conversations__doctor=tenant.user)
    )


def startable_doctors(tenant: Tenant) -> list[tuple[Patient, Any]]:
    """(own patient record, doctor) pairs a patient may start a conversation with."""
    if not tenant.is_patient:
        return []
    existing = set(Conversation.objects.visible_to(tenant).values_list("patient_id", "doctor_id"))
    team = care_rows(tenant.hospital).filter(patient__in=Patient.objects.visible_to(tenant).filter(user=tenant.user))
    return [
        (assignment.patient, assignment.doctor)
        for assignment in team.select_related("patient", "doctor")
        if (assignment.patient_id, assignment.doctor_id) not in existing
    ]
