"""The Origin check of WebSocket connections: only pages of this very site may open a socket.

Channels' ``AllowedHostsOriginValidator`` compares only the host name with ``ALLOWED_HOSTS``, so
``http://`` and ``https://`` pages, and any port of an allowed host, were all accepted. This check
follows the rule Django's CSRF protection applies to form posts instead: the ``Origin`` header
must name exactly this site, scheme, host and port, i.e. the socket request's own scheme
(``ws`` ↔ ``http``, ``wss`` ↔ ``https``) and ``Host`` header, where the host must be one of
``ALLOWED_HOSTS``; or be one of ``CSRF_TRUSTED_ORIGINS`` (behind a TLS proxy the socket arrives
as plain ``ws``, so the public ``https://`` origin is listed there). A missing or ``null``
Origin is refused.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def normalized_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an ``http``/``https`` origin, the default port filled in."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname, port or DEFAULT_PORTS[parts.scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin1")
    return None


def allowed_origins(scope: dict[str, Any]) -> set[tuple[str, str, int]]:
    """The origins a socket with this scope may come from (see the module docstring)."""
    allowed = {o for o in map(normalized_origin, settings.CSRF_TRUSTED_ORIGINS) if o is not None}
    host = _header(scope, b"host")
    if host:
        domain, _ = split_domain_port(host)
        if domain and validate_host(domain, settings.ALLOWED_HOSTS):
            scheme = "https" if scope.get("scheme") == "wss" else "http"
            own = normalized_origin(f"{scheme}://{host}")
            if own is not None:
                allowed.add(own)
    return allowed


class SameOriginValidator:
    """ASGI middleware: pass the WebSocket on only when its Origin is this site (else close)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "websocket":
            raise ValueError("SameOriginValidator only guards WebSocket connections.")
        origin = _header(scope, b"origin")
        parsed = normalized_origin(origin) if origin else None
        if parsed is not None and parsed in allowed_origins(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)  # type: ignore[arg-type]  # a WebSocket scope (above)
