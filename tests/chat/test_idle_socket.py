"""Sockets that stay open: an idle live-status WebSocket on the real channels-redis layer must
survive well past redis-py's default 5 s socket timeout (which used to race channels-redis's 5 s
blocking pop and close every idle page's socket with 1011), and a new upload announces "queued"."""

from __future__ import annotations

import pytest
import redis
from channels.layers import get_channel_layer
from channels_redis.core import RedisChannelLayer

from apps.studies import services as study_services
from apps.studies.models import StudyStatus
from tests.celery_worker import dedicated_broker
from tests.factories import make_study

from .conftest import db, make_study_row, run

pytestmark = pytest.mark.integration

IDLE_S = 30


def test_layer_reads_wait_longer_than_its_blocking_pop(live, settings):
    layer = get_channel_layer()
    assert isinstance(layer, RedisChannelLayer)
    assert settings.CHANNELS_REDIS_CONNECTION["socket_timeout"] > layer.brpop_timeout
    pool = layer.create_pool(0)
    assert pool.connection_kwargs["socket_timeout"] == settings.CHANNELS_REDIS_CONNECTION["socket_timeout"]
    assert pool.connection_kwargs["socket_keepalive"] is True


def test_idle_socket_stays_open_and_then_receives_a_push(live, ws):
    w = live
    study = make_study_row(w.paul_record, w.alice)

    async def scenario():
        alice = await ws.open(f"/ws/h/{w.a.slug}/notifications/", w.alice)
        # Idle: nothing is sent either way while the consumer's receive loop pops on Redis.
        assert await alice.receive_nothing(timeout=IDLE_S, interval=1)
        assert not alice.future.done(), f"the consumer stopped while idle: {alice.future.exception()!r}"

        await db(study_services.set_study_status)(study.pk, w.a.pk, StudyStatus.PROCESSING, "AI read in progress.")
        event = await alice.receive_json_from(timeout=5)
        assert (event["type"], event["study_id"], event["status"]) == ("study.status", study.pk, "processing")
        await alice.disconnect()

    run(scenario)


def test_upload_announces_queued(live, ws, redis_url):
    w = live

    async def scenario():
        alice = await ws.open(f"/ws/h/{w.a.slug}/notifications/", w.alice)
        study = await db(make_study)(w.paul_record, w.alice)
        event = await alice.receive_json_from(timeout=5)
        assert event == {
            "type": "study.status",
            "study_id": study.pk,
            "status": "queued",
            "label": "Queued for AI read",
            "message": "Waiting for the AI second read.",
        }
        await alice.disconnect()

    # The AI read goes to this run's own queue (nobody consumes it), not to a shared one.
    with dedicated_broker(redis_url, "ws-queued") as broker:
        run(scenario)
        assert redis.Redis.from_url(broker.url).llen(broker.queue) == 1
