"""Deployment checks (``manage.py check --deploy``) for settings of this project."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Tags, Warning, register


@register(Tags.security, deploy=True)
def public_base_url_check(app_configs: Any, **kwargs: Any) -> list[Warning]:
    """Without PUBLIC_BASE_URL, e-mails sent outside a request carry relative links nobody can open."""
    if settings.DEBUG or settings.PUBLIC_BASE_URL:
        return []
    return [
        Warning(
            "PUBLIC_BASE_URL is not set: e-mails sent outside a request (drift alerts from the worker, "
            "invitations sent by a command) carry links without the portal's address.",
            hint="Set PUBLIC_BASE_URL to the portal's public scheme and host, e.g. https://imaging.example.org.",
            id="imagemedix.W001",
        )
    ]
