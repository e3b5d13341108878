"""Notifications (persisted, then pushed live) and the patient–doctor chat."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import OuterRef, Q
from django.utils import timezone
from django_scopes import ScopedManager

from apps.accounts.models import Hospital
from apps.accounts.tenancy import Tenant
from apps.studies.access import NOTHING, in_care_of

MESSAGE_MAX_LENGTH = 2000


class NotificationKind(models.TextChoices):
    RESULT_READY = "result_ready", "AI read ready"
    STUDY_FAILED = "study_failed", "AI read failed"
    REPORT_SIGNED = "report_signed", "Report signed"
    REPORT_WITHDRAWN = "report_withdrawn", "Report withdrawn"
    NEW_MESSAGE = "new_message", "New message"
    STUDY_STATUS = "study_status", "Study status"
    DRIFT_ALERT = "drift_alert", "AI model drift alert"


class NotificationQuerySet(models.QuerySet["Notification"]):
    def visible_to(self, tenant: Tenant) -> NotificationQuerySet:
        """A user's own notifications in the tenant's hospital; nobody reads anybody else's."""
        return self.for_user(tenant.hospital.pk, tenant.user.pk)

    def for_user(self, hospital_id: int, user_id: int) -> NotificationQuerySet:
        """The same rule by ids, for the push side (apps/chat/notifications.py) that has no request."""
        return self.filter(hospital_id=hospital_id, user_id=user_id)


NotificationManager = models.Manager.from_queryset(NotificationQuerySet)


class Notification(models.Model):
    """Something a user should see, in one hospital: an AI result, a signed report, a message.

    The row is the source of truth. The live push over WebSocket is only a courtesy (Channels
    delivers at most once), so a client that reconnects asks for every row after the last id
    it saw (``sync``) and nothing is lost. ``key`` names the event a notification is about when
    that event may be announced more than once (a rerun of an AI read): one row per user and key.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.CASCADE, related_name="notifications")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    kind = models.CharField(max_length=20, choices=NotificationKind.choices)
    title = models.CharField(max_length=200)
    body = models.CharField(max_length=500, blank=True)
    url = models.CharField(max_length=300, blank=True, help_text="Page the notification links to.")
    data = models.JSONField(default=dict, blank=True, help_text="Ids the client needs (study, conversation).")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)
    key = models.CharField(max_length=100, blank=True, help_text="The event notified about, e.g. study:7:diagnosis:42.")

    objects: ClassVar[NotificationManager[Notification]] = ScopedManager(NotificationManager, hospital="hospital")
    _default_manager: ClassVar[
        NotificationManager[Notification]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["hospital", "user", "read_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["hospital", "user", "key"], condition=~models.Q(key=""), name="one_notification_per_event"
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} for {self.user}: {self.title}"

    @property
    def is_read(self) -> bool:
        return self.read_at is not None

    def as_event(self) -> dict[str, object]:
        """The JSON shape sent to browsers (WebSocket push, sync and the JSON fallback)."""
        return {
            "id": self.pk,
            "kind": self.kind,
            "title": self.title,
            "body": self.body,
            "url": self.url,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
            "read": self.is_read,
        }


class ConversationQuerySet(models.QuerySet["Conversation"]):
    def visible_to(self, tenant: Tenant) -> ConversationQuerySet:
        """The conversations the user is a party to in a role they hold here (the doctor, or the
        patient's own login), while that doctor cares for that patient (apps.studies.access).
        Hospital admins do not read chats unless they are a party."""
        parties = NOTHING
        if tenant.is_doctor:
            parties |= Q(doctor=tenant.user.pk)
        if tenant.is_patient:
            parties |= Q(patient__user=tenant.user.pk)
        cared_for = in_care_of(tenant.hospital, doctor=OuterRef("doctor"), patient=OuterRef("patient"))
        return self.filter(parties, cared_for, hospital=tenant.hospital)


ConversationManager = models.Manager.from_queryset(ConversationQuerySet)


class Conversation(models.Model):
    """The message thread between one patient and one of their doctors.

    It may be read and written only while the doctor is assigned to the patient
    (``apps.studies.models.CareAssignment``); the patient side is ``patient.user``.
    """

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="conversations")
    patient = models.ForeignKey("studies.Patient", on_delete=models.CASCADE, related_name="conversations")
    doctor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    created_at = models.DateTimeField(auto_now_add=True)

    objects: ClassVar[ConversationManager[Conversation]] = ScopedManager(ConversationManager, hospital="hospital")
    _default_manager: ClassVar[
        ConversationManager[Conversation]
    ]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["patient", "doctor"], name="unique_conversation_pair")]

    def __str__(self) -> str:
        return f"{self.patient} ↔ {self.doctor}"

    @property
    def group_name(self) -> str:
        """Channels group of the open chat sockets; always carries the hospital."""
        return conversation_group(self.hospital_id, self.pk)


class MessageQuerySet(models.QuerySet["Message"]):
    def visible_to(self, tenant: Tenant) -> MessageQuerySet:
        """The messages of the conversations the user sees."""
        return self.filter(hospital=tenant.hospital, conversation__in=Conversation.objects.visible_to(tenant))


MessageManager = models.Manager.from_queryset(MessageQuerySet)


class Message(models.Model):
    """One chat message. Stored as typed and always rendered escaped (never as HTML)."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="chat_messages")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    sender = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="chat_messages")
    body = models.TextField(max_length=MESSAGE_MAX_LENGTH)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)

    objects: ClassVar[MessageManager[Message]] = ScopedManager(MessageManager, hospital="hospital")
    _default_manager: ClassVar[MessageManager[Message]]  # for mypy, which cannot see the class ScopedManager makes

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["conversation", "-created_at"])]

    def __str__(self) -> str:
        return f"Message #{self.pk} from {self.sender}"

    def as_event(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "conversation_id": self.conversation_id,
            "sender_id": self.sender_id,
            "sender_name": self.sender.display_name,
            "body": self.body,
            "created_at": self.created_at.isoformat(),
        }


def user_group(hospital_id: int, user_id: int) -> str:
    """Channels group of one user's notification sockets in one hospital."""
    return f"h{hospital_id}.u{user_id}"


def conversation_group(hospital_id: int, conversation_id: int) -> str:
    return f"h{hospital_id}.c{conversation_id}"


def access_group(user_id: int) -> str:
    """Channels group of every open socket of one user, in every hospital: told to re-validate
    when the user's access may have ended (logout, password change, membership, care team)."""
    return f"user.{user_id}"
