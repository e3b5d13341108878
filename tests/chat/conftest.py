"""Fixtures of the chat and notification tests.

* Every test gets its own cache key prefix, so rate-limit counters never leak between tests.
* ``live`` switches the channel layer to the real channels-redis on the local Redis (unique
  prefix per test) and uses a transactional database, because consumers reach the database
  from worker threads (``database_sync_to_async``) and pushes happen on commit.
* ``ws`` opens authenticated WebSocket connections through the real ASGI application
  (origin check → session auth → URL router → consumer).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django_scopes import scopes_disabled

from apps.chat.models import Conversation
from apps.studies.models import Study, StudyStatus
from tests.auth import Client

ORIGIN = "http://testserver"


@pytest.fixture(autouse=True)
def _private_cache(settings):
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"chat-test-{uuid.uuid4().hex}"},
    }


@pytest.fixture
def live(settings, redis_url, transactional_db, world) -> Iterator[Any]:
    """The world, with channels-redis on the real Redis and a transactional database."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # The production connection options (socket timeouts), on the test's Redis.
                "hosts": [{"address": redis_url, **settings.CHANNELS_REDIS_CONNECTION}],
                "prefix": f"imagemedix-test-{uuid.uuid4().hex[:12]}",
            },
        }
    }
    from channels_redis.core import RedisChannelLayer

    assert isinstance(get_channel_layer(), RedisChannelLayer)
    yield world


def session_cookie(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


class Sockets:
    """Builds communicators against imagemedix.asgi.application; call ``cookie()`` in sync code
    (before entering the async scenario), then ``open()`` inside it."""

    def __init__(self) -> None:
        from imagemedix.asgi import application

        self.application = application
        self.cookies: dict[int, str] = {}

    def login(self, *users: Any) -> None:
        for user in users:
            self.cookies[user.pk] = session_cookie(user)

    def communicator(self, path: str, user: Any = None, origin: str | None = ORIGIN) -> WebsocketCommunicator:
        headers = [(b"host", b"testserver")]  # as a browser always sends it
        if origin is not None:
            headers.append((b"origin", origin.encode()))
        if user is not None:
            headers.append((b"cookie", f"sessionid={self.cookies[user.pk]}".encode()))
        return WebsocketCommunicator(self.application, path, headers=headers)

    async def open(self, path: str, user: Any = None, origin: str | None = ORIGIN) -> WebsocketCommunicator:
        """Connect and expect success; returns the communicator after reading its "hello"."""
        comm = self.communicator(path, user, origin)
        connected, code = await comm.connect(timeout=5)
        assert connected, f"{path} refused for {user} with {code}"
        hello = await comm.receive_json_from(timeout=5)
        assert hello["type"] == "hello", hello
        comm.hello = hello  # type: ignore[attr-defined]
        return comm

    async def refused(self, path: str, user: Any = None, origin: str | None = ORIGIN) -> int:
        """Connect and expect refusal; returns the close code."""
        comm = self.communicator(path, user, origin)
        connected, code = await comm.connect(timeout=5)
        # A refused consumer still runs until the client's disconnect; end it inside this event
        # loop. Left running, it is cancelled when async_to_sync closes the loop, and when that
        # catches it in a thread-sensitive sync call (asgiref shields those), the close waits
        # forever for a main thread that has moved on: the hang seen under load.
        await comm.disconnect(timeout=5)
        assert not connected, f"{path} accepted for {user}"
        return code


@pytest.fixture
def ws(live) -> Sockets:
    sockets = Sockets()
    sockets.login(live.alice, live.bob, live.carol, live.paul, live.dora)
    return sockets


def make_conversation(w: Any) -> Conversation:
    from apps.chat.services import start_conversation

    with scopes_disabled():
        return start_conversation(w.paul_record, w.alice, actor=w.alice)


def make_study_row(patient: Any, uploader: Any) -> Study:
    """A Study row without the upload pipeline (no file, no AI task): the status tests drive
    the status themselves through ``set_study_status``, as the diagnosis task does."""
    with scopes_disabled():
        return Study.objects.create(
            hospital=patient.hospital,
            patient=patient,
            uploaded_by=uploader,
            status=StudyStatus.QUEUED,
            source_format="png",
            original_filename="scan.png",
            file_name="studies/none.png.enc",
            file_sha256="0" * 64,
            file_key_id="test",
            file_size=1,
        )


def db(fn: Any) -> Any:
    """``database_sync_to_async`` for a plain function, with every hospital scope disabled."""

    def run(*args: Any, **kwargs: Any) -> Any:
        with scopes_disabled():
            return fn(*args, **kwargs)

    return database_sync_to_async(run)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run one async scenario in a fresh event loop, then close the Redis pools of that loop."""

    async def wrapper() -> None:
        try:
            await scenario()
        finally:
            await get_channel_layer().close_pools()

    async_to_sync(wrapper)()
