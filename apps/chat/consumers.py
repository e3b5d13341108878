"""WebSocket consumers: a user's notifications, and one patient–doctor conversation.

The tenant is resolved once, in ``connect()``, from the session user (AuthMiddlewareStack) and
the hospital slug in the path, exactly like TenantMiddleware does for pages; the Origin header
is checked before that by AllowedHostsOriginValidator (imagemedix/asgi.py). Close codes before
or after accept:

* 4401 — not logged in;
* 4404 — not a member of this hospital (same as a hospital that does not exist);
* 4403 — a member who may not open this conversation, or whose access ended (assignment
  removed). Every incoming chat message re-checks membership and the assignment.

Every database call enters the hospital's scope (``tenant_scope``) inside the worker thread.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ValidationError
from django.http import Http404

from apps.accounts.tenancy import Tenant, resolve_tenant, tenant_scope
from apps.studies.access import visible_studies

from . import notifications, services
from .access import can_use
from .models import Conversation, Message, user_group
from .receivers import study_status_event

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
#: Largest client frame read (a message is at most 2,000 characters; JSON escaping adds some).
MAX_FRAME_CHARS = 16_000
#: Most studies one ``studies`` request may ask about (a caseload page shows 25).
MAX_WATCHED_STUDIES = 200


def _resolve(user: Any, slug: str) -> Tenant | None:
    try:
        return resolve_tenant(user, slug)
    except Http404:
        return None


def _as_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


class TenantConsumer(AsyncJsonWebsocketConsumer):
    """Resolves ``self.tenant`` in connect(); subclasses call ``await self.enter_tenant()``."""

    tenant: Tenant | None = None
    group: str | None = None

    async def enter_tenant(self) -> Tenant | None:
        """The tenant of this socket, or None after closing it with the right code."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return None
        slug = self.scope["url_route"]["kwargs"]["hospital_slug"]
        tenant = await database_sync_to_async(_resolve)(user, slug)
        if tenant is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return None
        self.tenant = tenant
        return tenant

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Only small JSON text frames are understood; anything else gets an error, not a crash."""
        if text_data is None or len(text_data) > MAX_FRAME_CHARS:
            await self.send_error("invalid", "Unknown request.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error("invalid", "Unknown request.")
            return
        await self.receive_json(content, **kwargs)

    async def join(self, group: str) -> None:
        self.group = group
        await self.channel_layer.group_add(group, self.channel_name)

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)
            self.group = None

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})


class NotificationConsumer(TenantConsumer):
    """``ws/h/<hospital_slug>/notifications/``: the user's notifications and live study status.

    Server → client: ``hello`` {unread, last_id}, ``notification`` {notification, unread},
    ``study.status`` {study_id, status, label, message}, ``sync`` {notifications, unread},
    ``unread`` {unread}. Client → server: ``ack`` {up_to}, ``sync`` {since}, ``studies`` {ids}.

    ``studies`` asks for the current status of the studies a page shows. Pushes are delivered at
    most once and a study can finish before the page's socket connects, so the page asks after
    every ``hello``; the answer is one ``study.status`` per study the user may see (others are
    left out silently, like studies that do not exist).
    """

    async def connect(self) -> None:
        tenant = await self.enter_tenant()
        if tenant is None:
            return
        # Join before accepting, so nothing sent after "hello" is missed.
        await self.join(user_group(tenant.hospital.pk, tenant.user.pk))
        await self.accept()
        await self.send_json(await database_sync_to_async(_hello_payload)(tenant.hospital.pk, tenant.user.pk))

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        assert self.tenant is not None  # noqa: S101 - connect() closed the socket otherwise
        hospital_id, user_id = self.tenant.hospital.pk, self.tenant.user.pk
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ack":
            up_to = _as_int(content.get("up_to"))
            if up_to is None:
                await self.send_error("invalid", "“up_to” must be a notification id.")
                return
            await database_sync_to_async(notifications.mark_read)(hospital_id, user_id, up_to)
            unread = await database_sync_to_async(notifications.unread_count)(hospital_id, user_id)
            await self.send_json({"type": "unread", "unread": unread})
        elif kind == "sync":
            since = _as_int(content.get("since", 0))
            if since is None:
                await self.send_error("invalid", "“since” must be a notification id.")
                return
            await self.send_json(await database_sync_to_async(_sync_payload)(hospital_id, user_id, since))
        elif kind == "studies":
            ids = content.get("ids")
            if not isinstance(ids, list) or len(ids) > MAX_WATCHED_STUDIES:
                await self.send_error("invalid", f"“ids” must be a list of at most {MAX_WATCHED_STUDIES} study ids.")
                return
            wanted = {n for n in map(_as_int, ids) if n is not None}
            for event in await database_sync_to_async(_study_status_events)(self.tenant, wanted):
                await self.send_json(event)
        else:
            await self.send_error("invalid", "Unknown request.")

    async def push(self, event: dict[str, Any]) -> None:
        """A notification or a transient event for this user (see apps/chat/notifications.py)."""
        await self.send_json(event["payload"])


def _study_status_events(tenant: Tenant, study_ids: set[int]) -> list[dict[str, Any]]:
    """``study.status`` events for those of ``study_ids`` that the tenant's user may see."""
    if not study_ids:
        return []
    with tenant_scope(tenant.hospital):
        rows = visible_studies(tenant).filter(pk__in=study_ids).values_list("pk", "status", "status_message")
        return [study_status_event(pk, status, message) for pk, status, message in rows]


def _hello_payload(hospital_id: int, user_id: int) -> dict[str, Any]:
    """Unread count, and the newest id: the client's starting point for a later ``sync``."""
    return {
        "type": "hello",
        "unread": notifications.unread_count(hospital_id, user_id),
        "last_id": notifications.last_id(hospital_id, user_id),
    }


def _sync_payload(hospital_id: int, user_id: int, since: int) -> dict[str, Any]:
    missed = notifications.notifications_since(hospital_id, user_id, since)
    return {
        "type": "sync",
        "notifications": [n.as_event() for n in missed],
        "unread": notifications.unread_count(hospital_id, user_id),
    }


class ChatConsumer(TenantConsumer):
    """``ws/h/<hospital_slug>/chat/<conversation_id>/``: one conversation, live.

    Client → server: ``message`` {body}, ``read`` {up_to}, ``sync`` {since} (after a reconnect).
    Server → client: ``hello``, ``message`` {message}, ``history`` {messages}, ``error`` {code,
    message}, ``revoked`` {message} (then close 4403).
    """

    conversation_id: int | None = None
    revoked = False

    async def connect(self) -> None:
        tenant = await self.enter_tenant()
        if tenant is None:
            return
        conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        allowed = await database_sync_to_async(_usable_conversation)(tenant, conversation_id)
        if allowed is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.conversation_id = conversation_id
        await self.join(allowed.group_name)
        await self.accept()
        await self.send_json({"type": "hello", "conversation_id": conversation_id})

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if self.revoked or self.tenant is None or self.conversation_id is None:
            return
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "message":
            body = content.get("body")
            if not isinstance(body, str):
                await self.send_error("invalid", "Please write a message before sending.")
                return
            try:
                await database_sync_to_async(_send)(self.tenant, self.conversation_id, body)
            except services.ChatAccessDenied as exc:
                await self.end_access(str(exc) or services.ACCESS_ENDED)
            except services.RateLimited as exc:
                await self.send_error("rate_limited", " ".join(exc.messages))
            except ValidationError as exc:
                await self.send_error("invalid", " ".join(exc.messages))
        elif kind == "sync":
            since = _as_int(content.get("since", 0)) or 0
            try:
                missed = await database_sync_to_async(_messages_since)(self.tenant, self.conversation_id, since)
            except services.ChatAccessDenied as exc:
                await self.end_access(str(exc) or services.ACCESS_ENDED)
                return
            await self.send_json({"type": "history", "messages": missed})
        elif kind == "read":
            up_to = _as_int(content.get("up_to"))
            try:
                await database_sync_to_async(_mark_read)(self.tenant, self.conversation_id, up_to)
            except services.ChatAccessDenied as exc:
                await self.end_access(str(exc) or services.ACCESS_ENDED)
        else:
            await self.send_error("invalid", "Unknown request.")

    async def end_access(self, message: str) -> None:
        """Tell the client why, then close; nothing more is accepted on this socket."""
        self.revoked = True
        await self.send_json({"type": "revoked", "message": message})
        await self.disconnect(CLOSE_FORBIDDEN)
        await self.close(code=CLOSE_FORBIDDEN)

    async def chat_message(self, event: dict[str, Any]) -> None:
        if not self.revoked:
            await self.send_json({"type": "message", "message": event["message"]})

    async def chat_revoked(self, event: dict[str, Any]) -> None:
        """Sent by the care_assignment_ended receiver: the doctor was taken off the patient."""
        if not self.revoked:
            await self.end_access(services.ACCESS_ENDED)


def _usable_conversation(tenant: Tenant, conversation_id: int) -> Conversation | None:
    with tenant_scope(tenant.hospital):
        conversation = (
            Conversation.objects.filter(hospital=tenant.hospital, pk=conversation_id)
            .select_related("patient", "hospital", "doctor")
            .first()
        )
        if conversation is None or not can_use(tenant, conversation):
            return None
        return conversation


def _current_conversation(tenant: Tenant, conversation_id: int) -> tuple[Tenant, Conversation]:
    """Re-check membership and the assignment right now (not as they were at connect)."""
    fresh = _resolve(tenant.user, tenant.hospital.slug)
    if fresh is None:
        raise services.ChatAccessDenied("You are no longer a member of this hospital.")
    conversation = _usable_conversation(fresh, conversation_id)
    if conversation is None:
        raise services.ChatAccessDenied(services.ACCESS_ENDED)
    return fresh, conversation


def _send(tenant: Tenant, conversation_id: int, body: str) -> None:
    fresh, conversation = _current_conversation(tenant, conversation_id)
    with tenant_scope(fresh.hospital):
        services.send_message(conversation, fresh.user, body)


def _mark_read(tenant: Tenant, conversation_id: int, up_to: int | None) -> None:
    fresh, conversation = _current_conversation(tenant, conversation_id)
    with tenant_scope(fresh.hospital):
        services.mark_read(conversation, fresh.user, up_to)


def _messages_since(tenant: Tenant, conversation_id: int, since: int) -> list[dict[str, Any]]:
    """Messages after ``since``, oldest first (what a reconnecting client missed; at most 100)."""
    fresh, conversation = _current_conversation(tenant, conversation_id)
    with tenant_scope(fresh.hospital):
        missed = (
            Message.objects.filter(conversation=conversation, pk__gt=since)
            .select_related("sender")
            .order_by("pk")[:100]
        )
        return [m.as_event() for m in missed]
