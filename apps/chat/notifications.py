"""Notifications for other apps: persist first, push live on commit.

Public API (import from here, nowhere else)::

    notify(hospital_id=…, user_id=…, kind=NotificationKind.REPORT_SIGNED, title=…, url=…, key=…)
    push_event(hospital_id=…, user_id=…, event={"type": "study.status", …})

``notify`` writes a ``Notification`` row and, once the surrounding transaction commits, sends
it to the user's open sockets in that hospital (group ``h{hospital_id}.u{user_id}``).
``push_event`` sends a transient event (no row), for things that are only interesting while a
page is open, such as a study moving from queued to processing.

A push that fails (Redis down) is logged and dropped: the row is already saved, and the
browser fetches what it missed when it reconnects.
"""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction
from django.utils import timezone

from apps.accounts.tenancy import tenant_scope

from .models import Notification, NotificationKind, user_group

log = logging.getLogger(__name__)

__all__ = [
    "NotificationKind",
    "group_send",
    "last_id",
    "mark_read",
    "notifications_since",
    "notify",
    "push_event",
    "unread_count",
]


def group_send(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to a Channels group now, from sync code; never raises."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:  # the realtime layer is best effort; the database row is the truth
        log.exception("Could not push to channel group %s", group)


def notify(
    *,
    hospital_id: int,
    user_id: int,
    kind: str,
    title: str,
    body: str = "",
    url: str = "",
    data: dict[str, Any] | None = None,
    key: str = "",
) -> Notification:
    """Create a notification for one user in one hospital and push it on commit.

    With ``key`` (the event it is about) the user gets at most one notification per key: notifying
    the same event again returns the existing row and pushes nothing."""
    if kind not in NotificationKind.values:
        raise ValueError(f"Unknown notification kind {kind!r}")
    if url and (not url.startswith("/") or url.startswith("//")):
        # Links stay inside the portal: no other sites, no javascript: URLs.
        raise ValueError("Notification links must be paths inside the portal, such as /h/<slug>/…")
    fields = {"kind": kind, "title": title[:200], "body": body[:500], "url": url[:300], "data": data or {}}
    with tenant_scope(hospital_id), transaction.atomic():
        if key:
            notification, created = Notification.objects.get_or_create(
                hospital_id=hospital_id, user_id=user_id, key=key[:100], defaults=fields
            )
            if not created:
                return notification
        else:
            notification = Notification.objects.create(hospital_id=hospital_id, user_id=user_id, **fields)
        notification_id = notification.pk
        transaction.on_commit(lambda: _push_notification(hospital_id, user_id, notification_id))
    return notification


def _push_notification(hospital_id: int, user_id: int, notification_id: int) -> None:
    with tenant_scope(hospital_id):
        notification = Notification.objects.filter(pk=notification_id).first()
        if notification is None:
            return
        unread = unread_count(hospital_id, user_id)
        payload = {"type": "notification", "notification": notification.as_event(), "unread": unread}
    group_send(user_group(hospital_id, user_id), {"type": "push", "payload": payload})


def push_event(*, hospital_id: int, user_id: int, event: dict[str, Any]) -> None:
    """Send a transient event (not stored) to one user's sockets in one hospital, on commit."""
    group = user_group(hospital_id, user_id)
    transaction.on_commit(lambda: group_send(group, {"type": "push", "payload": event}))


def unread_count(hospital_id: int, user_id: int) -> int:
    with tenant_scope(hospital_id):
        return Notification.objects.for_user(hospital_id, user_id).filter(read_at__isnull=True).count()


def last_id(hospital_id: int, user_id: int) -> int:
    """The id of the user's newest notification in this hospital (0 if none)."""
    with tenant_scope(hospital_id):
        newest = Notification.objects.for_user(hospital_id, user_id).order_by("-pk").values("pk").first()
    return newest["pk"] if newest else 0


def notifications_since(hospital_id: int, user_id: int, since: int = 0, limit: int = 100) -> list[Notification]:
    """The user's notifications with an id above ``since``, oldest first (what a client missed)."""
    with tenant_scope(hospital_id):
        return list(Notification.objects.for_user(hospital_id, user_id).filter(pk__gt=since).order_by("pk")[:limit])


def mark_read(hospital_id: int, user_id: int, up_to: int | None = None, **filters: Any) -> int:
    """Mark the user's unread notifications read (all, or those with id ≤ ``up_to``)."""
    with tenant_scope(hospital_id):
        qs = Notification.objects.for_user(hospital_id, user_id).filter(read_at__isnull=True, **filters)
        if up_to is not None:
            qs = qs.filter(pk__lte=up_to)
        return qs.update(read_at=timezone.now())
