"""State changes for hospital memberships. Each runs in a transaction and writes an audit event."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from . import audit
from .models import Hospital, Membership, Role, User
from .signals import announce_access_change


def add_member(
    hospital: Hospital,
    *,
    email: str,
    role: str,
    full_name: str = "",
    password: str | None = None,
    actor: Any = None,
    request: HttpRequest | None = None,
) -> Membership:
    """Give the person with ``email`` the ``role`` in ``hospital`` (re-activating an old one).

    An unknown e-mail creates the account with ``password``; an existing account keeps its
    password and name, so one hospital cannot take over another hospital's user.
    """
    if role not in Role.values:
        raise ValidationError("Unknown role.")
    email = email.strip().lower()
    with transaction.atomic():
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            if not password:
                raise ValidationError("A new account needs an initial password.")
            user = User.objects.create_user(email=email, password=password, full_name=full_name)
            audit.record("user.create", hospital=hospital, actor=actor, obj=user, request=request)
        membership, created = Membership.objects.get_or_create(user=user, hospital=hospital, role=role)
        if created or not membership.is_active:
            membership.is_active = True
            membership.save(update_fields=["is_active"])
            audit.record(
                "membership.add",
                hospital=hospital,
                actor=actor,
                obj=membership,
                request=request,
                user=user.pk,
                role=role,
            )
    return membership


def deactivate_member(membership: Membership, *, actor: Any = None, request: HttpRequest | None = None) -> None:
    """Switch a membership off (the row stays, for the audit trail and to re-activate later);
    the member's open WebSockets in this hospital close at once.

    A hospital admin cannot remove their own admin role: that would lock the hospital out.
    """
    if membership.user_id == getattr(actor, "pk", None) and membership.role == Role.HOSPITAL_ADMIN:
        raise ValidationError("You cannot remove your own administrator role.")
    with transaction.atomic():
        if membership.is_active:
            membership.is_active = False
            membership.save(update_fields=["is_active"])
            audit.record(
                "membership.deactivate",
                hospital=membership.hospital,
                actor=actor,
                obj=membership,
                request=request,
                user=membership.user_id,
                role=membership.role,
            )
            # Open WebSockets of this user re-validate on commit; those in this hospital close.
            announce_access_change(membership.user_id, "membership")
