"""State changes for hospital memberships: invitations (sent, accepted, withdrawn) and switching a
membership off. Each runs in a transaction and writes an audit event."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from imagemedix.links import absolute_url

from . import audit, tokens
from .models import ApiToken, Hospital, Invitation, Membership, Role, User
from .signals import announce_access_change


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invite(hospital: Hospital, *, email: str, role: str, actor: Any, request: HttpRequest | None = None) -> Invitation:
    """Invite ``email`` to take ``role`` in ``hospital``: an Invitation (only its token's digest
    stored) and, on commit, an e-mail with the link. Nothing here looks at whether an account has
    that address, so what the admin sees is the same either way; an earlier pending invitation of
    the same address and role is withdrawn (its link stops working)."""
    if role not in Role.values:
        raise ValidationError("Unknown role.")
    email = email.strip().lower()
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    with transaction.atomic():
        earlier = Invitation.objects.filter(hospital=hospital, email=email, role=role).pending()
        replaced = list(earlier.values_list("pk", flat=True))
        earlier.update(revoked_at=now)
        invitation = Invitation.objects.create(
            hospital=hospital,
            email=email,
            role=role,
            token_digest=_digest(token),
            invited_by=actor,
            created_at=now,
            expires_at=now + dt.timedelta(days=settings.INVITATION_TTL_DAYS),
        )
        audit.record(
            "invitation.send",
            hospital=hospital,
            actor=actor,
            obj=invitation,
            request=request,
            email=email,
            role=role,
            replaces=replaced,
        )
        link = absolute_url(reverse("accounts:invitation", args=[token]), request)
        transaction.on_commit(lambda: _send_invitation(invitation, link))
    return invitation


def _send_invitation(invitation: Invitation, link: str) -> None:
    context = {"invitation": invitation, "link": link, "days": settings.INVITATION_TTL_DAYS}
    send_mail(
        render_to_string("accounts/invitation_subject.txt", context).strip(),
        render_to_string("accounts/invitation_email.txt", context),
        None,
        [invitation.email],
    )


def find_invitation(token: str) -> Invitation | None:
    """The pending invitation of a link's token, or None (unknown, used, withdrawn or expired).
    Looked up across hospitals: the link is all the person has."""
    with scopes_disabled():
        return Invitation.objects.pending().filter(token_digest=_digest(token)).select_related("hospital").first()


def is_platform_account(user: User) -> bool:
    """Superusers and staff accounts that administer no hospital: the platform's own people, who
    are never members of a hospital. (A hospital admin is ``is_staff`` too, for the scoped Django
    admin, and may take roles in other hospitals.)"""
    if user.is_superuser:
        return True
    return user.is_staff and not Membership.objects.filter(user=user, role=Role.HOSPITAL_ADMIN, is_active=True).exists()


def accept_invitation(invitation: Invitation, user: User, *, request: HttpRequest | None = None) -> Membership:
    """``user`` (signed in with the invited address) takes the invited role; the invitation is used."""
    if user.email.lower() != invitation.email:
        raise ValidationError("This invitation was sent to another e-mail address.")
    if is_platform_account(user):
        raise ValidationError(
            "Platform administrator accounts cannot join a hospital. Accept with a personal account instead."
        )
    with transaction.atomic(), scopes_disabled():
        locked = Invitation.objects.select_for_update().filter(pk=invitation.pk).pending().first()
        if locked is None:
            raise ValidationError("This invitation is no longer valid.")
        membership, created = Membership.objects.get_or_create(user=user, hospital=locked.hospital, role=locked.role)
        if not created and not membership.is_active:
            membership.is_active = True
            membership.save(update_fields=["is_active"])
        locked.accepted_at = timezone.now()
        locked.accepted_by = user
        locked.save(update_fields=["accepted_at", "accepted_by"])
        audit.record(
            "invitation.accept",
            hospital=locked.hospital,
            actor=user,
            obj=locked,
            request=request,
            membership=membership.pk,
            role=locked.role,
        )
    return membership


def create_account_from_invitation(
    invitation: Invitation, *, full_name: str, password: str, request: HttpRequest | None = None
) -> User:
    """A new account for the invited address (there must be none yet), which then accepts."""
    with transaction.atomic():
        if User.objects.filter(email__iexact=invitation.email).exists():
            raise ValidationError("An account with this e-mail address exists: sign in to accept the invitation.")
        user = User.objects.create_user(email=invitation.email, password=password, full_name=full_name.strip())
        audit.record(
            "user.create", hospital=invitation.hospital, actor=user, obj=user, request=request, via="invitation"
        )
        accept_invitation(invitation, user, request=request)
    return user


def revoke_invitation(invitation: Invitation, *, actor: Any, request: HttpRequest | None = None) -> None:
    """Withdraw a pending invitation: its link stops working."""
    with transaction.atomic():
        updated = Invitation.objects.filter(pk=invitation.pk).pending().update(revoked_at=timezone.now())
        if updated:
            audit.record(
                "invitation.revoke",
                hospital=invitation.hospital,
                actor=actor,
                obj=invitation,
                request=request,
                email=invitation.email,
                role=invitation.role,
            )


def deactivate_member(membership: Membership, *, actor: Any = None, request: HttpRequest | None = None) -> None:
    """Switch a membership off (the row stays, for the audit trail and to re-activate later);
    the member's open WebSockets in this hospital close at once.

    A hospital admin cannot remove their own admin role: that would lock the hospital out. When no
    clinical role is left there, the member's API tokens bound to this hospital are revoked.
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
            # API tokens bound to this hospital open nothing any more once no clinical role is left.
            clinical_left = Membership.objects.filter(
                user_id=membership.user_id,
                hospital=membership.hospital,
                is_active=True,
                role__in=(Role.DOCTOR, Role.HOSPITAL_ADMIN),
            ).exists()
            if not clinical_left:
                for token in ApiToken.objects.filter(user_id=membership.user_id, hospital=membership.hospital):
                    tokens.revoke(token, actor=actor, request=request)


def set_doctor_second_factor(
    hospital: Hospital, required: bool, *, actor: Any, request: HttpRequest | None = None
) -> None:
    """Require (or stop requiring) two-step verification of the hospital's doctors. Signed-in
    doctors without a code in their session are held at the door from their next request on."""
    with transaction.atomic():
        if hospital.require_doctor_2fa == required:
            return
        hospital.require_doctor_2fa = required
        hospital.save(update_fields=["require_doctor_2fa"])
        audit.record(
            "hospital.second_factor_policy",
            hospital=hospital,
            actor=actor,
            obj=hospital,
            request=request,
            require_doctor_2fa=required,
        )
