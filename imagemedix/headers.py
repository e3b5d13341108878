"""The Content-Security-Policy header (django-csp), with this site's own WebSocket endpoint.

The policy itself is ``CONTENT_SECURITY_POLICY`` in settings. A page's scripts open WebSockets
to the same host (notifications, live study status, chat); CSP Level 3 lets ``'self'`` cover
``ws:``/``wss:`` of the same host, but not every browser in use does, so the socket's own origin
(``wss://`` behind HTTPS, ``ws://`` otherwise, the host the request came to) is named as well.
"""

from __future__ import annotations

from csp.middleware import CSPMiddleware, PolicyParts
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponseBase, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        socket_origin = f"{'wss' if request.is_secure() else 'ws'}://{request.get_host()}"
        update = dict(parts.update or {})
        update["connect-src"] = [*update.get("connect-src", []), socket_origin]
        parts.update = update
        return parts
