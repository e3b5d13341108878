"""State changes of the chat: start a conversation, send a message, mark messages read.

Each runs in a transaction, writes an audit event where it changes something that matters, and
sends realtime events on commit. The same functions serve the no-JavaScript form post and the
WebSocket consumer, so both paths get the same checks (assignment, rate limit, length).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from apps.accounts import audit
from apps.studies.access import care_rows, cares_for, is_active_doctor
from apps.studies.models import Patient

from . import notifications
from .access import assignment_active, is_party
from .models import MESSAGE_MAX_LENGTH, Conversation, Message, NotificationKind


def rate_limit() -> tuple[int, int]:
    """(messages, seconds): a user may send at most that many messages per window (settings
    ``CHAT_RATE_LIMIT_MESSAGES`` and ``CHAT_RATE_LIMIT_SECONDS``)."""
    return settings.CHAT_RATE_LIMIT_MESSAGES, settings.CHAT_RATE_LIMIT_SECONDS


ACCESS_ENDED = "This conversation is closed: the doctor is no longer caring for this patient."


class ChatAccessDenied(PermissionDenied):
    """The sender is not a party, or the care assignment has ended."""


class RateLimited(ValidationError):
    """Too many messages in a short time."""


def start_conversation(
    patient: Patient, doctor: Any, *, actor: Any, request: HttpRequest | None = None
) -> Conversation:
    """The conversation between ``patient`` and ``doctor`` (created if needed).

    Allowed only while the doctor is assigned to the patient and the patient has a login;
    ``actor`` must be the doctor or the patient's own user.
    """
    if patient.user_id is None:
        raise ValidationError("This patient has no portal login yet, so they cannot receive messages.")
    if actor.pk not in (doctor.pk, patient.user_id):
        raise ChatAccessDenied("Only the patient and their doctor can take part in this conversation.")
    with transaction.atomic():
        if not is_active_doctor(doctor, patient.hospital):
            raise ChatAccessDenied("This doctor no longer works at this hospital.")
        if not cares_for(doctor, patient):
            raise ChatAccessDenied(ACCESS_ENDED)
        conversation, created = Conversation.objects.get_or_create(
            hospital=patient.hospital, patient=patient, doctor=doctor
        )
        if created:
            audit.record(
                "conversation.start", hospital=patient.hospital, actor=actor, obj=conversation, request=request
            )
    return conversation


def rate_limit_key(hospital_id: int, user_id: int) -> str:
    """Cache key of the user's message counter for the current window (scoped to the hospital)."""
    window = int(time.time() // rate_limit()[1])
    return f"chat:rate:h{hospital_id}:u{user_id}:{window}"


def _check_rate_limit(conversation: Conversation, sender: Any) -> None:
    """Fixed-window counter in the shared cache, keyed by hospital and user."""
    limit, seconds = rate_limit()
    key = rate_limit_key(conversation.hospital_id, sender.pk)
    cache.add(key, 0, timeout=seconds * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=seconds * 2)
        count = 1
    if count > limit:
        raise RateLimited(
            f"You are sending messages too quickly. Please wait {seconds} seconds and try again.",
            code="rate_limited",
        )


def conversation_url(conversation: Conversation) -> str:
    return reverse("chat:conversation", args=[conversation.hospital.slug, conversation.pk])


def send_message(conversation: Conversation, sender: Any, body: str, *, request: HttpRequest | None = None) -> Message:
    """Persist a message, notify the other side, and broadcast it to open chat sockets on commit.

    Raises ``ChatAccessDenied`` when the sender is not a party or the assignment has ended,
    ``RateLimited`` when the sender is over the limit, ``ValidationError`` for an empty or
    over-long message.
    """
    text = (body or "").strip()
    if not text:
        raise ValidationError("Please write a message before sending.", code="empty")
    if len(text) > MESSAGE_MAX_LENGTH:
        raise ValidationError(
            f"Messages can be at most {MESSAGE_MAX_LENGTH} characters (this one has {len(text)}).", code="too_long"
        )
    if not is_party(conversation, sender):
        raise ChatAccessDenied("Only the patient and their doctor can take part in this conversation.")
    if not assignment_active(conversation):
        raise ChatAccessDenied(ACCESS_ENDED)
    _check_rate_limit(conversation, sender)

    hospital = conversation.hospital
    with transaction.atomic():
        # Re-check inside the transaction, holding the assignment row, so an unassignment that
        # commits at the same moment cannot let one more message through.
        if (
            not care_rows(hospital)
            .select_for_update()
            .filter(patient_id=conversation.patient_id, doctor_id=conversation.doctor_id)
            .exists()
        ):
            raise ChatAccessDenied(ACCESS_ENDED)
        message = Message.objects.create(hospital=hospital, conversation=conversation, sender=sender, body=text)
        audit.record(
            "message.send", hospital=hospital, actor=sender, obj=message, request=request, conversation=conversation.pk
        )
        recipient_id = conversation.patient.user_id if sender.pk == conversation.doctor_id else conversation.doctor_id
        if recipient_id is not None:
            notifications.notify(
                hospital_id=hospital.pk,
                user_id=recipient_id,
                kind=NotificationKind.NEW_MESSAGE,
                title=f"New message from {sender.display_name}",
                url=conversation_url(conversation),
                data={"conversation_id": conversation.pk, "message_id": message.pk},
            )
        event = {"type": "chat.message", "message": message.as_event()}
        group = conversation.group_name
        transaction.on_commit(lambda: notifications.group_send(group, event))
    return message


def mark_read(conversation: Conversation, reader: Any, up_to: int | None = None) -> int:
    """Mark the messages ``reader`` received in this conversation as read (up to an id), and the
    matching "new message" notifications with them. Returns the number of messages marked."""
    now = timezone.now()
    with transaction.atomic():
        qs = Message.objects.filter(conversation=conversation, read_at__isnull=True).exclude(sender=reader)
        if up_to is not None:
            qs = qs.filter(pk__lte=up_to)
        marked = qs.update(read_at=now)
        notifications.mark_read(
            conversation.hospital_id,
            reader.pk,
            kind=NotificationKind.NEW_MESSAGE,
            data__conversation_id=conversation.pk,
        )
    return marked
