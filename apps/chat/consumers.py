"""WebSocket consumers: a user's notifications, and one patient–doctor conversation.

The tenant is resolved once, in ``connect()``, from the session user (AuthMiddlewareStack) and
the hospital slug in the path, exactly like TenantMiddleware does for pages; the Origin header
is checked before that (``SameOriginValidator``, imagemedix/websocket_origin.py).

A socket lives only as long as the access it was opened with. Every inbound frame, and every
push before it goes out, re-validates: the session is still logged in with the same session
auth hash (no logout, no password change), the account is active, the membership in this
hospital is active, and for a conversation the care assignment still exists. Logout, password
changes, membership changes and unassignments also tell the user's sockets to re-validate at
once (group ``user.<id>``, ``access.revoked``), so they close without waiting for traffic.

Close codes, before or after accept:

* 4401 — not logged in, or no longer (logged out, password changed, account switched off);
* 4404 — not a member of this hospital (same as a hospital that does not exist);
* 4403 — a member who may not open this conversation, or whose access ended since (membership
  switched off, assignment removed). A ``revoked`` frame says why just before the close.

Every database call enters the hospital's scope (``tenant_scope``) inside the worker thread.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.core.exceptions import ValidationError
from django.http import Http404

from apps.accounts import audit
from apps.accounts.tenancy import Tenant, find_tenant, resolve_tenant, session_user, tenant_scope
from apps.reports.events import report_pdf_event
from apps.reports.models import Report, ReportStatus
from apps.studies.models import Study

from . import notifications, services
from .access import usable_conversation
from .models import Conversation, Message, access_group, user_group
from .receivers import study_status_event

log = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
#: Largest client frame read (a message is at most 2,000 characters; JSON escaping adds some).
MAX_FRAME_CHARS = 16_000
#: Most studies one ``studies`` request may ask about (a caseload page shows 25).
MAX_WATCHED_STUDIES = 200
#: Most reports one ``reports`` request may ask about (a page shows one or a few).
MAX_WATCHED_REPORTS = 50


@dataclass(frozen=True)
class AccessEnded:
    """Why an open socket must close now: the close code and the sentence the client shows."""

    code: int
    message: str


SIGNED_OUT = AccessEnded(CLOSE_UNAUTHENTICATED, "You have been signed out. Please sign in again.")
MEMBERSHIP_ENDED = AccessEnded(CLOSE_FORBIDDEN, "You are no longer a member of this hospital.")
CONVERSATION_ENDED = AccessEnded(CLOSE_FORBIDDEN, services.ACCESS_ENDED)


def _enter(user: Any, slug: str, ip: str | None) -> Tenant | None:
    """The tenant a new socket opens in, or None (``resolve_tenant`` audits the refusal)."""
    try:
        return resolve_tenant(user, slug, ip=ip)
    except Http404:
        return None


def _as_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number >= 0 else None


def current_tenant(session_key: str | None, user_id: int, slug: str) -> Tenant | AccessEnded:
    """The socket's tenant as of now, or why its access has ended (see the module docstring)."""
    user = session_user(session_key)
    if user is None or user.pk != user_id:
        return SIGNED_OUT
    return find_tenant(user, slug) or MEMBERSHIP_ENDED


class TenantConsumer(AsyncJsonWebsocketConsumer):
    """Resolves ``self.tenant`` in connect() and keeps re-validating it.

    Subclasses call ``await self.enter_tenant()`` in connect(), ``await self.join(...)`` for their
    groups, and ``await self.still_allowed()`` before answering a frame or forwarding a push.
    """

    tenant: Tenant | None = None
    session_key: str | None = None
    joined: tuple[str, ...] = ()
    ended = False

    async def enter_tenant(self) -> Tenant | None:
        """The tenant of this socket, or None after closing it with the right code."""
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return None
        slug = self.scope["url_route"]["kwargs"]["hospital_slug"]
        tenant = await database_sync_to_async(_enter)(user, slug, self.client_ip)
        if tenant is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return None
        self.tenant = tenant
        self.session_key = self.scope["session"].session_key
        return tenant

    @property
    def client_ip(self) -> str | None:
        """The peer's address, for the audit trail (the proxy's, behind one, like REMOTE_ADDR)."""
        client = self.scope.get("client")
        return client[0] if client else None

    def check_access(self) -> Tenant | AccessEnded:
        """Runs in a worker thread: the fresh tenant, or why this socket must close."""
        assert self.tenant is not None  # noqa: S101 - only called on accepted sockets
        return current_tenant(self.session_key, self.tenant.user.pk, self.tenant.hospital.slug)

    async def still_allowed(self) -> bool:
        """Re-validate now; on failure tell the client why, close, and answer False from then on."""
        if self.ended or self.tenant is None:
            return False
        verdict = await database_sync_to_async(self.check_access)()
        if isinstance(verdict, AccessEnded):
            await self.end_access(verdict)
            return False
        self.tenant = verdict
        return True

    async def end_access(self, ended: AccessEnded) -> None:
        """Tell the client why, leave every group, close; nothing more goes in or out."""
        self.ended = True
        await self.send_json({"type": "revoked", "message": ended.message})
        await self.leave_groups()
        await self.close(code=ended.code)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Only small JSON text frames are understood; anything else gets an error, not a crash."""
        if not await self.still_allowed():
            return
        if text_data is None or len(text_data) > MAX_FRAME_CHARS:
            await self.send_error("invalid", "Unknown request.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.send_error("invalid", "Unknown request.")
            return
        await self.receive_json(content, **kwargs)

    async def join(self, *groups: str) -> None:
        """Join the socket's groups, always with the user's access group first."""
        assert self.tenant is not None  # noqa: S101 - enter_tenant() succeeded
        for group in (access_group(self.tenant.user.pk), *groups):
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined = (*self.joined, group)

    async def leave_groups(self) -> None:
        for group in self.joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = ()

    async def disconnect(self, code: int) -> None:
        await self.leave_groups()

    async def access_revoked(self, event: dict[str, Any]) -> None:
        """Something that decides this user's access changed (apps.chat.receivers): re-check now."""
        await self.still_allowed()

    async def send_error(self, code: str, message: str) -> None:
        await self.send_json({"type": "error", "code": code, "message": message})


class NotificationConsumer(TenantConsumer):
    """``ws/h/<hospital_slug>/notifications/``: the user's notifications and live study status.

    Server → client: ``hello`` {unread, last_id}, ``notification`` {notification, unread},
    ``study.status`` {study_id, status, label, message}, ``sync`` {notifications, unread},
    ``unread`` {unread}, ``report.pdf`` {report_id, study_id, status, label, url}. Client → server:
    ``ack`` {up_to}, ``sync`` {since}, ``studies`` {ids}, ``reports`` {ids}.

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
        assert self.tenant is not None  # noqa: S101 - receive() re-validated it
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
            await self.send_json(await database_sync_to_async(_sync_payload)(self.tenant, since, self.client_ip))
        elif kind == "studies":
            ids = content.get("ids")
            if not isinstance(ids, list) or len(ids) > MAX_WATCHED_STUDIES:
                await self.send_error("invalid", f"“ids” must be a list of at most {MAX_WATCHED_STUDIES} study ids.")
                return
            wanted = {n for n in map(_as_int, ids) if n is not None}
            for event in await database_sync_to_async(_study_status_events)(self.tenant, wanted, self.client_ip):
                await self.send_json(event)
        elif kind == "reports":
            ids = content.get("ids")
            if not isinstance(ids, list) or len(ids) > MAX_WATCHED_REPORTS:
                await self.send_error("invalid", f"“ids” must be a list of at most {MAX_WATCHED_REPORTS} report ids.")
                return
            wanted = {n for n in map(_as_int, ids) if n is not None}
            for event in await database_sync_to_async(_report_pdf_events)(self.tenant, wanted):
                await self.send_json(event)
        else:
            await self.send_error("invalid", "Unknown request.")

    async def push(self, event: dict[str, Any]) -> None:
        """A notification or a transient event for this user (see apps/chat/notifications.py),
        forwarded only while the user's session and membership still hold."""
        if await self.still_allowed():
            await self.send_json(event["payload"])


def _study_status_events(tenant: Tenant, study_ids: set[int], ip: str | None) -> list[dict[str, Any]]:
    """``study.status`` events for those of ``study_ids`` that the tenant's user may see (one
    ``study.view_status`` audit event names the studies whose status was sent)."""
    if not study_ids:
        return []
    with tenant_scope(tenant.hospital):
        rows = list(
            Study.objects.visible_to(tenant).filter(pk__in=study_ids).values_list("pk", "status", "status_message")
        )
        if rows:
            audit.record(
                "study.view_status",
                hospital=tenant.hospital,
                actor=tenant.user,
                ip=ip,
                via="websocket",
                studies=sorted(pk for pk, _, _ in rows),
            )
        return [study_status_event(pk, status, message) for pk, status, message in rows]


def _report_pdf_events(tenant: Tenant, report_ids: set[int]) -> list[dict[str, Any]]:
    """``report.pdf`` events for those of ``report_ids`` that are signed and the user may read."""
    if not report_ids:
        return []
    with tenant_scope(tenant.hospital):
        rows = (
            Report.objects.visible_to(tenant)
            .filter(pk__in=report_ids, status__in=(ReportStatus.SIGNED, ReportStatus.AMENDED))
            .values_list("pk", "study_id", "pdf_status")
        )
        return [report_pdf_event(tenant.hospital.slug, pk, study_id, status) for pk, study_id, status in rows]


def _hello_payload(hospital_id: int, user_id: int) -> dict[str, Any]:
    """Unread count, and the newest id: the client's starting point for a later ``sync``."""
    return {
        "type": "hello",
        "unread": notifications.unread_count(hospital_id, user_id),
        "last_id": notifications.last_id(hospital_id, user_id),
    }


def _sync_payload(tenant: Tenant, since: int, ip: str | None) -> dict[str, Any]:
    hospital_id, user_id = tenant.hospital.pk, tenant.user.pk
    missed = notifications.notifications_since(hospital_id, user_id, since)
    if missed:
        audit.record(
            "notification.sync", hospital=tenant.hospital, actor=tenant.user, ip=ip, via="websocket", count=len(missed)
        )
    return {
        "type": "sync",
        "notifications": [n.as_event() for n in missed],
        "unread": notifications.unread_count(hospital_id, user_id),
    }


class ChatConsumer(TenantConsumer):
    """``ws/h/<hospital_slug>/chat/<conversation_id>/``: one conversation, live.

    Client → server: ``message`` {body}, ``read`` {up_to}, ``sync`` {since} (after a reconnect).
    Server → client: ``hello``, ``message`` {message}, ``history`` {messages}, ``error`` {code,
    message}, ``revoked`` {message} (then close 4401 or 4403).
    """

    conversation: Conversation | None = None

    async def connect(self) -> None:
        tenant = await self.enter_tenant()
        if tenant is None:
            return
        conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        conversation = await database_sync_to_async(_usable_conversation)(tenant, conversation_id)
        if conversation is None:
            await database_sync_to_async(_refuse_conversation)(tenant, conversation_id, self.client_ip)
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.conversation = conversation
        await self.join(conversation.group_name)
        await self.accept()
        await self.send_json({"type": "hello", "conversation_id": conversation_id})

    def check_access(self) -> Tenant | AccessEnded:
        """The member's session and membership, and then the conversation: still a party, the
        doctor still assigned to the patient."""
        assert self.conversation is not None  # noqa: S101 - only called on accepted sockets
        verdict = super().check_access()
        if isinstance(verdict, AccessEnded):
            return verdict
        if _usable_conversation(verdict, self.conversation.pk) is None:
            return CONVERSATION_ENDED
        return verdict

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        assert self.tenant is not None and self.conversation is not None  # noqa: S101 - receive() re-validated
        tenant, conversation = self.tenant, self.conversation
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "message":
            body = content.get("body")
            if not isinstance(body, str):
                await self.send_error("invalid", "Please write a message before sending.")
                return
            try:
                await database_sync_to_async(_send)(tenant, conversation, body)
            except services.ChatAccessDenied:
                await self.end_access(CONVERSATION_ENDED)
            except services.RateLimited as exc:
                await self.send_error("rate_limited", " ".join(exc.messages))
            except ValidationError as exc:
                await self.send_error("invalid", " ".join(exc.messages))
        elif kind == "sync":
            since = _as_int(content.get("since", 0)) or 0
            missed = await database_sync_to_async(_messages_since)(tenant, conversation, since, self.client_ip)
            await self.send_json({"type": "history", "messages": missed})
        elif kind == "read":
            up_to = _as_int(content.get("up_to"))
            await database_sync_to_async(_mark_read)(tenant, conversation, up_to)
        else:
            await self.send_error("invalid", "Unknown request.")

    async def chat_message(self, event: dict[str, Any]) -> None:
        """A new message in this conversation, forwarded only while both access checks hold."""
        if await self.still_allowed():
            await self.send_json({"type": "message", "message": event["message"]})


def _usable_conversation(tenant: Tenant, conversation_id: int) -> Conversation | None:
    with tenant_scope(tenant.hospital):
        return usable_conversation(tenant, conversation_id)


def _send(tenant: Tenant, conversation: Conversation, body: str) -> None:
    with tenant_scope(tenant.hospital):
        services.send_message(conversation, tenant.user, body)


def _mark_read(tenant: Tenant, conversation: Conversation, up_to: int | None) -> None:
    with tenant_scope(tenant.hospital):
        services.mark_read(conversation, tenant.user, up_to)


def _messages_since(tenant: Tenant, conversation: Conversation, since: int, ip: str | None) -> list[dict[str, Any]]:
    """Messages after ``since``, oldest first (what a reconnecting client missed; at most 100).
    Audited (``conversation.sync``) when there were any."""
    with tenant_scope(tenant.hospital):
        missed = list(
            Message.objects.visible_to(tenant)
            .filter(conversation=conversation, pk__gt=since)
            .select_related("sender")
            .order_by("pk")[:100]
        )
        if missed:
            audit.record(
                "conversation.sync",
                hospital=tenant.hospital,
                actor=tenant.user,
                obj=conversation,
                ip=ip,
                via="websocket",
                since=since,
                count=len(missed),
            )
        return [m.as_event() for m in missed]


def _refuse_conversation(tenant: Tenant, conversation_id: int, ip: str | None) -> None:
    """Audit a socket refused for a conversation that is not the user's (or not there)."""
    audit.record_refusal(
        hospital=tenant.hospital,
        actor=tenant.user,
        ip=ip,
        status=CLOSE_FORBIDDEN,
        reason="not a conversation of this user",
        via="websocket",
        conversation=conversation_id,
    )
