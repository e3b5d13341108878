"""The WebSocket half of the tenancy matrix: every path in tests/routes/chat.py WS_ROUTES,
opened as every persona through the real ASGI application and channels-redis, must be accepted
or closed with exactly the expected code; and every WebSocket route must be in the table."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django_scopes import scopes_disabled

from apps.chat.routing import websocket_urlpatterns
from tests.routes.chat import ACCEPT, WS_ROUTES

pytestmark = pytest.mark.integration

CASES = [
    pytest.param(route, persona, id=f"{route.name}-{persona}")
    for route in WS_ROUTES
    for persona in route.expectations()
]


@pytest.mark.parametrize(("route", "persona"), CASES)
def test_ws_route_persona(route, persona, live, ws):
    attr, expected = route.expectations()[persona]
    user = getattr(live, attr) if attr else None
    with scopes_disabled():
        path = route.path(live)

    async def scenario():
        try:
            comm = ws.communicator(path, user)
            connected, code = await comm.connect(timeout=5)
            if expected == ACCEPT:
                assert connected, f"{persona} refused with {code} on {path}"
                assert (await comm.receive_json_from(timeout=5))["type"] == "hello"
                await comm.disconnect()
            else:
                assert not connected, f"{persona} accepted on {path}"
                assert code == expected
                await comm.disconnect(timeout=5)
        finally:
            await get_channel_layer().close_pools()

    async_to_sync(scenario)()


@pytest.mark.parametrize("route", WS_ROUTES, ids=[r.name for r in WS_ROUTES])
def test_ws_route_refuses_foreign_origin(route, live, ws):
    """Even the user who may open it is refused from another site's page."""
    attr, _ = route.owner
    with scopes_disabled():
        path = route.path(live)

    async def scenario():
        try:
            for origin in ("http://evil.example", "null", None):
                comm = ws.communicator(path, getattr(live, attr), origin=origin)
                connected, _ = await comm.connect(timeout=5)
                assert not connected, origin
                await comm.disconnect(timeout=5)
        finally:
            await get_channel_layer().close_pools()

    async_to_sync(scenario)()


def test_every_websocket_route_is_in_the_table(world):
    with scopes_disabled():
        paths = [route.path(world).lstrip("/") for route in WS_ROUTES]
    for pattern in websocket_urlpatterns:
        assert any(pattern.pattern.match(p) for p in paths), f"{pattern.pattern} is not in WS_ROUTES"
    assert all(any(p.pattern.match(path) for p in websocket_urlpatterns) for path in paths)
