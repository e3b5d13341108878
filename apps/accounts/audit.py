"""Writing the append-only audit trail. Every state-changing service and every view or
download of patient data calls ``record``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.db import models
from django.http import HttpRequest, HttpResponse

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
    """Lets ``current_request`` see the request (goes after ``AuthenticationMiddleware``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with serving(request):
            return self.get_response(request)


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
    """Append one audit event. ``action`` is a dotted verb such as ``study.upload``."""
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return AuditEvent.objects.create(
        hospital=hospital,
        actor=actor,
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        detail=detail,
        ip_address=ip or client_ip(request),
    )


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
