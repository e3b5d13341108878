"""The WebSocket Origin must be this very site: scheme, host and port (issue 8, finding 8).

Through the real ASGI application on channels-redis: a page of the site opens the socket; the
same host name over the other scheme or on another port, another site, a host outside
ALLOWED_HOSTS and a missing or ``null`` Origin are all refused before the consumer runs.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from imagemedix.websocket_origin import normalized_origin

pytestmark = pytest.mark.integration


def try_connect(ws, user, *, origin: str | None, host: str = "testserver", scheme: str = "ws") -> bool:
    path = "/ws/h/st-mary/notifications/"
    headers = [(b"host", host.encode()), (b"cookie", f"sessionid={ws.cookies[user.pk]}".encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))

    async def scenario() -> bool:
        comm = WebsocketCommunicator(ws.application, path, headers=headers)
        comm.scope["scheme"] = scheme
        try:
            connected, _ = await comm.connect(timeout=5)
            if connected:
                assert (await comm.receive_json_from(timeout=5))["type"] == "hello"
                await comm.disconnect()
            return connected
        finally:
            await get_channel_layer().close_pools()

    return async_to_sync(scenario)()


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "accepted"),
    [
        ("http://testserver", "testserver", "ws", True),
        ("HTTP://TestServer:80", "testserver", "ws", True),  # same origin, spelled out
        ("http://testserver:8000", "testserver:8000", "ws", True),
        ("https://testserver", "testserver", "wss", True),
        ("https://testserver", "testserver", "ws", False),  # other scheme
        ("http://testserver", "testserver", "wss", False),
        ("http://testserver:8000", "testserver", "ws", False),  # other port
        ("http://testserver", "testserver:8000", "ws", False),
        ("http://evil.example", "testserver", "ws", False),  # other site
        ("http://sub.testserver", "testserver", "ws", False),
        ("http://evil.example", "evil.example", "ws", False),  # host not allowed (DNS rebinding)
        ("null", "testserver", "ws", False),
        (None, "testserver", "ws", False),
        ("http://testserver/path", "testserver", "ws", False),
    ],
)
def test_origin_must_be_this_site(live, ws, origin, host, scheme, accepted):
    assert try_connect(ws, live.alice, origin=origin, host=host, scheme=scheme) is accepted


def test_trusted_origin_behind_a_tls_proxy(live, ws, settings):
    """The proxy ends TLS, so the socket arrives as plain ws; the public https origin is trusted
    through CSRF_TRUSTED_ORIGINS, and only that exact origin."""
    settings.ALLOWED_HOSTS = ["imaging.example.org"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://imaging.example.org"]
    assert try_connect(ws, live.alice, origin="https://imaging.example.org", host="imaging.example.org")
    assert not try_connect(ws, live.alice, origin="https://imaging.example.org:8443", host="imaging.example.org")
    assert not try_connect(ws, live.alice, origin="http://imaging.example.org:8080", host="imaging.example.org")


@pytest.mark.parametrize("origin", ["javascript:alert(1)", "http://", "http://host:notaport", "file:///x"])
def test_malformed_origins_are_not_origins(origin):
    assert normalized_origin(origin) is None
