"""Absolute links to the portal's own pages, for e-mails.

``absolute_url(path, request)``: ``PUBLIC_BASE_URL`` + path when that setting is set (the address
people reach the portal at, whoever sends the mail: a view, a Celery worker, a command); otherwise
the request's own scheme and host when there is a request (the embedded mode); otherwise the path
as it is, relative (``check --deploy`` warns about that deployment, apps/accounts/checks.py).
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def absolute_url(path: str, request: HttpRequest | None = None) -> str:
    """The link to ``path`` (a path inside the portal, as ``reverse`` gives it) for an e-mail."""
    if not path.startswith("/") or path.startswith("//"):
        raise ValueError(f"absolute_url takes a path inside the portal, not {path!r}")
    if settings.PUBLIC_BASE_URL:
        return settings.PUBLIC_BASE_URL + path
    if request is not None:
        return request.build_absolute_uri(path)
    return path
