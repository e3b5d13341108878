"""Who is acting, in which hospital, with which roles.

The tenant is set once per entry point: ``TenantMiddleware`` for pages,
``TenantAPIMixin`` (apps/accounts/api.py) for the REST API and ``connect()`` for WebSocket
consumers, which resolve the hospital through ``resolve_tenant``; and the ``TenantTask`` base
class for Celery tasks, which are sent the hospital's id with their other ids. Each of them
activates a django-scopes scope, so that a query on a tenant-owned model outside of a scope
raises instead of leaking another hospital's rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import wraps
from importlib import import_module
from typing import TYPE_CHECKING, Any

from celery import Task
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpRequest
from django.utils.crypto import constant_time_compare
from django_scopes import scope, scopes_disabled

from . import audit, second_factor
from .models import Hospital, Membership, Role

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

    from .models import User


@dataclass(frozen=True)
class Tenant:
    """The hospital a request acts in, and the acting user's roles there."""

    hospital: Hospital
    user: Any  # User; Any so that AnonymousUser type-checks in helpers
    roles: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return Role.HOSPITAL_ADMIN in self.roles

    @property
    def is_doctor(self) -> bool:
        return Role.DOCTOR in self.roles

    @property
    def is_patient(self) -> bool:
        return Role.PATIENT in self.roles

    @property
    def is_clinical(self) -> bool:
        """Doctors and hospital admins: the staff side of the portal."""
        return self.is_doctor or self.is_admin


def roles_in(user: User, hospital: Hospital) -> frozenset[str]:
    if not user.is_authenticated or not user.is_active:
        return frozenset()
    return frozenset(
        Membership.objects.filter(user=user, hospital=hospital, is_active=True).values_list("role", flat=True)
    )


def find_tenant(user: User, slug: str) -> Tenant | None:
    """The Tenant for ``user`` in the hospital ``slug``, or None if the user is not a member
    there (or there is no such active hospital). No side effects: for re-checks of access that
    was granted before, such as an open WebSocket's."""
    hospital = Hospital.objects.filter(slug=slug, is_active=True).first()
    if hospital is None:
        return None
    roles = roles_in(user, hospital)
    if not roles:
        return None
    return Tenant(hospital=hospital, user=user, roles=roles)


def resolve_tenant(user: User, slug: str, *, ip: str | None = None) -> Tenant:
    """The Tenant for ``user`` in the hospital ``slug``; 404 if the user is not a member there.

    Not-a-member and no-such-hospital give the same 404, so hospital slugs cannot be probed.
    Each entry point (pages, API, WebSocket connect) comes here, so a refused attempt is audited
    here, once (``access.refused`` in the hospital that was asked for, if it exists). ``ip`` is
    for callers without an HTTP request (a WebSocket).
    """
    tenant = find_tenant(user, slug)
    if tenant is None:
        audit.record_refusal(
            hospital=Hospital.objects.filter(slug=slug).first(),
            actor=user,
            ip=ip,
            status=404,
            reason="not a member of this hospital",
            slug=slug[:60],
        )
        raise Http404("No such hospital.")
    return tenant


def session_user(session_key: str | None) -> User | None:
    """The active user logged in with ``session_key`` right now, else None.

    None when the session was logged out or expired, when the password changed since login (the
    stored session auth hash no longer matches, as Django checks on every page), when the
    account was switched off, or when the user must use a second factor and has not entered a
    code in this session (``second_factor``). Long-lived connections (WebSockets) call this again and again;
    unlike ``django.contrib.auth.get_user`` it only reads, so it never flushes a session that a
    page is updating at the same moment (a password change in this very session).
    """
    if not session_key:
        return None
    session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except KeyError:
        return None
    if backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is None or not user.is_active:
        return None
    if not constant_time_compare(session.get(HASH_SESSION_KEY, ""), user.get_session_auth_hash()):
        return None
    if not second_factor.session_is_verified(session, user) and second_factor.needs_verification(user):
        return None
    return user


@contextmanager
def tenant_scope(hospital: Hospital | int) -> Iterator[None]:
    """Activate the django-scopes scope of one hospital. Never pass None: that would disable it."""
    if hospital is None:
        raise ValueError("tenant_scope needs a hospital")
    with scope(hospital=hospital):
        yield


def hospitals_administered_by(user: User | AnonymousUser) -> list[int]:
    """Ids of the hospitals where ``user`` is an active hospital admin."""
    if not user.is_authenticated:
        return []
    return list(
        Membership.objects.filter(user=user, role=Role.HOSPITAL_ADMIN, is_active=True).values_list(
            "hospital_id", flat=True
        )
    )


@contextmanager
def admin_scope(user: User | AnonymousUser) -> Iterator[None]:
    """Scope for the Django admin: platform admins see everything, hospital admins their own."""
    if user.is_authenticated and user.is_superuser:
        with scopes_disabled():
            yield
    else:
        with scope(hospital=hospitals_administered_by(user)):
            yield


class AuthenticatedRequest(HttpRequest):
    """The request of a ``login_required`` view: its user is signed in. A type for annotations."""

    user: User


class TenantRequest(AuthenticatedRequest):
    """The request of a page under ``/h/<hospital_slug>/``, as its view gets it: ``TenantMiddleware``
    has set ``tenant`` and let only a signed-in member through. A type for annotations: such views
    take ``request: TenantRequest``."""

    tenant: Tenant


def role_required(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """View decorator: the member must hold one of ``roles`` in this hospital, else 403.

    Membership itself (404 otherwise) and login (302 otherwise) are checked by the middleware.
    """

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapped(request: Any, *args: Any, **kwargs: Any) -> Any:
            tenant: Tenant | None = request.tenant
            if tenant is None:
                raise Http404
            if not tenant.roles.intersection(roles):
                raise PermissionDenied("Your role in this hospital does not allow this page.")
            return view(request, *args, **kwargs)

        wrapped.required_roles = frozenset(roles)  # type: ignore[attr-defined]  # read by the route tests
        return wrapped

    return decorator


class TenantTask(Task):
    """Base class of every Celery task that works on one hospital's data (pretix's ``EventTask``
    and ``TransactionAwareTask`` in one).

    * **Ids, never objects.** The task is sent keyword arguments only, one of them
      ``hospital_id``: ``render_report_pdf.delay(hospital_id=report.hospital_id, report_id=report.pk)``.
    * **The tenant is entered once, here.** The task body runs inside that hospital's scope, so
      it looks its rows up like a view does (a row of another hospital is simply not found) and
      never switches scopes off to find out where it belongs.
    * **Sent on commit.** ``delay``/``apply_async`` inside a transaction send the message once
      the transaction commits (at once outside one), so a worker never looks for a row that is
      not committed yet, and a rolled-back change sends nothing. A message that cannot be sent
      (broker down) is logged and handed to ``on_send_error``; the caller's transaction stands.
      Sending on commit means there is no ``AsyncResult`` to return: both return None.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with tenant_scope(_hospital_id(self, args, kwargs)):
            return super().__call__(*args, **kwargs)

    # Returns None: the task is sent on commit, so there is no AsyncResult to give back yet.
    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> None:  # type: ignore[override]
        _hospital_id(self, args, kwargs or {})

        def send() -> None:
            try:
                super(TenantTask, self).apply_async(args, kwargs, **options)
            except Exception as exc:  # noqa: BLE001 - the committed change stands; on_send_error decides
                self.on_send_error(exc, kwargs or {})

        transaction.on_commit(send)

    def on_send_error(self, exc: Exception, kwargs: dict[str, Any]) -> None:
        """The broker refused the message (it is down): log it. Tasks whose work must not be
        lost override this (and have a periodic check that sends the work again)."""
        log.error("Could not send task %s %s: %s", self.name, kwargs, exc)


def _hospital_id(task: Task, args: Any, kwargs: dict[str, Any]) -> int:
    hospital_id = kwargs.get("hospital_id")
    if args or not isinstance(hospital_id, int) or isinstance(hospital_id, bool):
        raise TypeError(f"{task.name} is a tenant task: send it keyword ids only, hospital_id=<int> among them")
    return hospital_id
