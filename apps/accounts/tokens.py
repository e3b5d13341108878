"""API tokens (django-rest-knox, model ``ApiToken``): created, revoked one by one or all at once.

A token is shown once, when it is created; only its SHA-512 digest and its first characters
(``token_key``, to tell tokens apart in lists) are stored. Every token expires
``API_TOKEN_TTL_HOURS`` after it was created, and may be bound to one hospital. Each change writes
an audit event (never the token, only its first characters).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from . import audit
from .models import ApiToken, Hospital, Role, User

#: The API is for clinicians: tokens are for doctors and hospital admins.
CLINICAL_ROLES = (Role.DOCTOR, Role.HOSPITAL_ADMIN)


def clinical_hospitals(user: User) -> QuerySet[Hospital]:
    """Active hospitals where ``user`` is an active doctor or hospital admin: those a token may open."""
    return Hospital.objects.filter(
        is_active=True,
        memberships__user=user,
        memberships__is_active=True,
        memberships__role__in=CLINICAL_ROLES,
    ).distinct()


def _acting(actor: Any, request: HttpRequest | None, user: User) -> tuple[Any, HttpRequest | None]:
    """Who acts, and on which request: the given ones, else the request being served (a password
    change in ``User.save``) and whoever is logged in on it, or the user themselves where nobody
    is (a password reset). Outside a request (a management command) there is no actor."""
    request = request or audit.current_request()
    if actor is None and request is not None:
        actor = request.user if request.user.is_authenticated else user
    return actor, request


def create(
    user: User,
    *,
    name: str = "",
    hospital: Hospital | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> tuple[ApiToken, str]:
    """A new token for ``user``; returns the row and the token itself (shown once, never stored).

    ``hospital`` binds the token to that hospital, which must be one where the user is a clinician.
    """
    if not user.is_active:
        raise ValidationError("This account is switched off.")
    allowed = clinical_hospitals(user)
    if hospital is None and not allowed.exists():
        raise ValidationError("The API is for doctors and hospital administrators.")
    if hospital is not None and not allowed.filter(pk=hospital.pk).exists():
        raise ValidationError("You can bind a token only to a hospital where you are a doctor or administrator.")
    actor, request = _acting(actor, request, user)
    with transaction.atomic():
        token, raw = ApiToken.objects.create(user=user, name=name.strip()[:100], hospital=hospital)
        audit.record(
            "api_token.create",
            hospital=hospital,
            actor=actor,
            request=request,
            user=user.pk,
            token=token.token_key,
            name=token.name,
            expiry=token.expiry.isoformat() if token.expiry else None,
        )
    return token, raw


def revoke(token: ApiToken, *, actor: Any = None, request: HttpRequest | None = None) -> None:
    """Delete one token: it opens nothing from now on."""
    actor, request = _acting(actor, request, token.user)
    with transaction.atomic():
        audit.record(
            "api_token.revoke",
            hospital=token.hospital,
            actor=actor,
            request=request,
            user=token.user_id,
            token=token.token_key,
        )
        token.delete()


def revoke_all(user: User, *, reason: str, actor: Any = None, request: HttpRequest | None = None) -> int:
    """Delete every token of ``user``; returns how many there were. ``reason``: ``user_request``
    (the user's own "Revoke all"), ``password_change`` or ``account_off``."""
    with transaction.atomic():
        keys = list(ApiToken.objects.filter(user=user).values_list("token_key", flat=True))
        if not keys:
            return 0
        actor, request = _acting(actor, request, user)
        ApiToken.objects.filter(user=user).delete()
        audit.record(
            "api_token.revoke_all",
            hospital=None,
            actor=actor,
            request=request,
            user=user.pk,
            reason=reason,
            tokens=keys,
        )
    return len(keys)


def active_tokens(user: User) -> list[ApiToken]:
    """The user's tokens that still work, newest first (expired ones are deleted on next use)."""
    return list(ApiToken.objects.filter(user=user, expiry__gt=timezone.now()).select_related("hospital"))
