"""Writing the append-only audit trail. Every state-changing service and every view or
download of patient data calls ``record``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone

from . import auditchain
from .models import AuditEvent, Hospital

# The request being served, for events written far from any view (a password change is detected in
# ``User.save``, which every path reaches: the password pages, a reset, the admin, ``changepassword``).
_current_request: ContextVar[HttpRequest | None] = ContextVar("audit_current_request", default=None)


@contextmanager
def serving(request: HttpRequest) -> Iterator[None]:
    """Make ``request`` the one ``current_request`` returns while the block runs."""
    token = _current_request.set(request)
    try:
        yield
    finally:
        _current_request.reset(token)


def current_request() -> HttpRequest | None:
    """The request being served, or ``None`` outside one (a management command, a worker)."""
    return _current_request.get()


class AuditRequestMiddleware:
    """Lets ``current_request`` see the request (goes after ``AuthenticationMiddleware``), and
    audits every page a logged-in user was refused: a view (a tenant page, the admin) that
    answered 404 or 403 by raising, as the access helpers and ``role_required`` do."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with serving(request):
            return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, (Http404, PermissionDenied)):
            record_refused_request(request, 404 if isinstance(exception, Http404) else 403, str(exception))


def client_ip(request: HttpRequest | None) -> str | None:
    """The client address as Django sees it (put the proxy's real-IP handling in the proxy)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(
    action: str,
    *,
    hospital: Hospital | None,
    actor: Any = None,
    obj: models.Model | None = None,
    request: HttpRequest | None = None,
    ip: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """Append one audit event to the chain. ``action`` is a dotted verb such as ``study.upload``.

    The actor is stored as a snapshot (id, e-mail, name) next to the foreign key; the patient the
    event concerns is taken from ``obj`` (a patient, or anything with a ``patient``); ``detail``
    is stored as JSON (dates and the like as text).
    """
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    event = AuditEvent(
        hospital=hospital,
        actor=actor,
        actor_email=actor.email if actor is not None else "",
        actor_name=actor.full_name[:200] if actor is not None else "",
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        patient_id=patient_of(obj),
        detail=detail,
        ip_address=ip or client_ip(request),
        created_at=timezone.now(),
    )
    return auditchain.append(event)


def patient_of(obj: models.Model | None) -> int | None:
    """The id of the patient ``obj`` is about: the object itself if it is a patient record, else
    its ``patient`` foreign key (studies, reports, conversations, care assignments)."""
    if obj is None:
        return None
    if obj._meta.label_lower == "studies.patient":
        return obj.pk
    if any(field.name == "patient" and field.is_relation for field in obj._meta.concrete_fields):
        return obj.patient_id  # type: ignore[attr-defined]  # it has a patient field (checked above)
    return None


def record_password_change(user: Any) -> AuditEvent:
    """``auth.password_change`` for ``user``, whose new password ``User.save`` just stored.

    The actor is whoever is logged in on the request (the user on the password page, an admin in
    ``/admin/``); on a reset, nobody is logged in, and the user who proved the link is the actor.
    Outside a request (``changepassword``) there is no actor and no address.
    """
    request = current_request()
    actor = None
    if request is not None:
        actor = request.user if request.user.is_authenticated else user
    return record("auth.password_change", hospital=None, actor=actor, obj=user, request=request, user=user.pk)


#: Audit action for each account flag moving (flag, new value).
ACCOUNT_FLAG_ACTIONS = {
    ("is_staff", True): "user.staff_granted",
    ("is_staff", False): "user.staff_revoked",
    ("is_superuser", True): "user.superuser_granted",
    ("is_superuser", False): "user.superuser_revoked",
    ("is_active", False): "user.deactivate",
    ("is_active", True): "user.reactivate",
}


def _request_actor() -> tuple[HttpRequest | None, Any]:
    """The request being served and its logged-in user (None for each outside a request)."""
    request = current_request()
    if request is None or not request.user.is_authenticated:
        return request, None
    return request, request.user


def record_account_changes(user: Any, before: dict[str, bool]) -> None:
    """One event per account flag of ``user`` that differs from ``before`` (staff or superuser
    granted or taken away, the account switched off or on), by whoever is logged in on the
    request (nobody for ``createsuperuser`` or the shell). Platform-level: no hospital."""
    request, actor = _request_actor()
    for (flag, value), action in ACCOUNT_FLAG_ACTIONS.items():
        if before[flag] != value and getattr(user, flag) == value:
            record(action, hospital=None, actor=actor, obj=user, request=request, user=user.pk)


def record_user_deletion(user: Any) -> None:
    """``user.delete``: a user row was deleted (possible only for one no audit event names as
    its actor; the admin deactivates instead). Keeps who it was, since the row is gone."""
    request, actor = _request_actor()
    record("user.delete", hospital=None, actor=actor, obj=user, request=request, user=user.pk, email=user.email)


def record_refusal(
    *,
    hospital: Hospital | None,
    actor: Any,
    status: int,
    reason: str,
    request: HttpRequest | None = None,
    ip: str | None = None,
    **detail: Any,
) -> AuditEvent:
    """``access.refused``: ``actor`` asked for something of ``hospital`` and got ``status``.

    Written by the tenancy layer only: ``resolve_tenant`` (not a member of the hospital asked
    for, at every entry point), ``record_refused_request`` (a page, the admin or the API refused
    an object or a role), and the chat socket refusing a conversation.
    """
    request = request or current_request()
    if request is not None:
        detail = {"method": request.method, "path": request.path[:300], **detail}
    return record(
        "access.refused", hospital=hospital, actor=actor, request=request, ip=ip, status=status, reason=reason, **detail
    )


def record_refused_request(request: HttpRequest, status: int, reason: str) -> None:
    """A view refused a logged-in user with ``status`` (404: not found *or* not theirs to see,
    which look the same from outside; 403: their role does not allow it). Audited in the
    hospital of the URL (none for ``/admin/``). Anonymous requests are sent to log in instead."""
    if not request.user.is_authenticated:
        return
    tenant = request.tenant  # type: ignore[attr-defined]  # set by TenantMiddleware / TenantAPIMixin
    match = request.resolver_match
    record_refusal(
        hospital=tenant.hospital if tenant is not None else None,
        actor=request.user,
        request=request,
        status=status,
        reason=reason[:200],
        view=match.view_name if match is not None else "",
    )
