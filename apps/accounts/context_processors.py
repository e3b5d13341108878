"""Template context: the current tenant and the user's hospitals for the navigation."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest


def tenant(request: HttpRequest) -> dict[str, Any]:
    current = getattr(request, "tenant", None)
    return {
        "tenant": current,
        "hospital": current.hospital if current else None,
    }
