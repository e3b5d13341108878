"""Signals the accounts app sends for other apps to react to (they connect in their ``ready()``).

``access_changed`` (``user_id``, ``reason``) is sent after commit whenever something that decides a
user's access may have ended it: logout, a password change, the account or one of its
memberships switched off. Receivers re-check rather than trust the reason: the chat app tells
the user's open WebSockets to re-validate, and those whose session or membership is gone close.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import Signal
from django.http import HttpRequest

access_changed = Signal()


def announce_access_change(user_id: int, reason: str) -> None:
    """Send ``access_changed`` for ``user_id`` once the surrounding transaction commits."""
    transaction.on_commit(lambda: access_changed.send(sender=announce_access_change, user_id=user_id, reason=reason))


def on_user_logged_out(sender: object, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Logout: end the session in the store first, then let open sockets re-check.

    Django sends ``user_logged_out`` before it flushes the session, and ``on_commit`` runs at once
    outside a transaction; deleting first means no socket can re-validate against the old session.
    """
    if user is None or request is None:
        return
    from . import audit  # audit imports the models, which import this module

    audit.record("auth.logout", hospital=None, actor=user, request=request)
    request.session.delete()
    announce_access_change(user.pk, "logout")


def on_user_logged_in(sender: object, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """Audit a successful login (platform-level: no hospital is chosen yet)."""
    from . import audit

    audit.record("auth.login", hospital=None, actor=user, request=request)


def on_user_login_failed(
    sender: object, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """Audit a failed login with the e-mail address tried and the client address, never the
    password (only the username field is read from ``credentials``)."""
    from . import audit

    email = str(credentials.get("username") or credentials.get("email") or "")[:254]
    audit.record("auth.login_failed", hospital=None, request=request, email=email)


def on_user_deleted(sender: object, instance: Any, **kwargs: Any) -> None:
    """Audit the deletion of a user row, in the deleting transaction."""
    from . import audit

    audit.record_user_deletion(instance)
