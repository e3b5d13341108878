"""Writing the append-only audit trail. Every state-changing service and every view or
download of patient data calls ``record``."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.http import HttpRequest

from .models import AuditEvent, Hospital


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
