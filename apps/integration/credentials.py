"""Integration credentials: created and revoked by the hospital admin, checked on every DICOMweb
request that presents one.

A credential is ``<key_id>.<secret>``. It is accepted as ``Authorization: Bearer <key_id>.<secret>``
or as HTTP Basic with ``key_id`` as user name and ``secret`` as password (what most PACS, Orthanc
included, can be configured to send). Only the SHA-256 of the secret is stored: the secret is 256
random bits, so a fast hash is enough (nothing to brute-force), and lookups stay cheap on every
request. The key id is public; it names the credential in lists, logs and the audit trail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django_scopes import scopes_disabled

from apps.accounts import audit
from apps.accounts.models import Hospital

from .models import IntegrationCredential

KEY_ID_PREFIX = "imx_"


@dataclass(frozen=True)
class IssuedCredential:
    """A new credential and its secret, which is shown to the hospital admin once and never stored."""

    credential: IntegrationCredential
    secret: str

    @property
    def token(self) -> str:
        """The whole credential, for ``Authorization: Bearer …``."""
        return f"{self.credential.key_id}.{self.secret}"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_credential(
    hospital: Hospital, *, name: str, actor: Any, request: HttpRequest | None = None
) -> IssuedCredential:
    name = (name or "").strip()[:100]
    if not name:
        raise ValidationError("Please name the credential after the system that will use it.")
    secret = secrets.token_urlsafe(32)
    with transaction.atomic():
        credential = IntegrationCredential.objects.create(
            hospital=hospital,
            name=name,
            key_id=KEY_ID_PREFIX + secrets.token_hex(8),
            secret_sha256=_digest(secret),
            created_by=actor,
        )
        audit.record(
            "integration.credential_create",
            hospital=hospital,
            actor=actor,
            obj=credential,
            request=request,
            key_id=credential.key_id,
        )
    return IssuedCredential(credential=credential, secret=secret)


def revoke_credential(credential: IntegrationCredential, *, actor: Any, request: HttpRequest | None = None) -> bool:
    """Revoke a credential now; returns False when it was already revoked."""
    with transaction.atomic():
        updated = IntegrationCredential.objects.filter(pk=credential.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now(), revoked_by=actor
        )
        if updated:
            audit.record(
                "integration.credential_revoke",
                hospital=credential.hospital,
                actor=actor,
                obj=credential,
                request=request,
                key_id=credential.key_id,
            )
    credential.refresh_from_db()
    return bool(updated)


def presented_key(authorization: str) -> tuple[str, str] | None:
    """(key_id, secret) from an ``Authorization`` header value, or None if it does not carry one."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer":
        key_id, dot, secret = value.partition(".")
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        key_id, dot, secret = decoded.partition(":")
    else:
        return None
    if not dot or not key_id.startswith(KEY_ID_PREFIX) or not secret:
        return None
    return key_id, secret


def authenticate(authorization: str) -> IntegrationCredential | None:
    """The active credential the header presents, or None (unknown, revoked or wrong secret)."""
    presented = presented_key(authorization)
    if presented is None:
        return None
    key_id, secret = presented
    # A credential names its own hospital, so it is looked up before any hospital scope exists.
    with scopes_disabled():
        credential = IntegrationCredential.objects.select_related("hospital").filter(key_id=key_id).first()
    if credential is None or not credential.is_active or not credential.hospital.is_active:
        return None
    if not hmac.compare_digest(credential.secret_sha256, _digest(secret)):
        return None
    return credential


def note_use(credential: IntegrationCredential) -> None:
    """Remember when the credential was last used (shown on the credentials page)."""
    with scopes_disabled():
        IntegrationCredential.objects.filter(pk=credential.pk).update(last_used_at=timezone.now())
