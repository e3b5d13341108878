"""The WebSockets write the same audit events as the pages: chat history pulled with ``sync``,
missed notifications, the status of studies a page asks for, and refused sockets (another
hospital, a conversation that is not the user's). Real stack: imagemedix.asgi.application,
channels-redis, a transactional database."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.chat import notifications, services
from apps.studies import services as study_services
from apps.studies.models import StudyStatus

from .conftest import db, make_conversation, make_study_row, run

pytestmark = pytest.mark.integration

PEER = ("203.0.113.9", 50123)


def events(action: str) -> list[AuditEvent]:
    with scopes_disabled():
        return list(AuditEvent.objects.filter(action=action).select_related("actor", "hospital").order_by("id"))


async def open_from_peer(ws, path: str, user):
    """Like ``ws.open``, with the peer address a server would put in the scope."""
    comm = ws.communicator(path, user)
    comm.scope["client"] = PEER
    connected, code = await comm.connect(timeout=5)
    assert connected, code
    assert (await comm.receive_json_from(timeout=5))["type"] == "hello"
    return comm


def test_chat_history_over_the_socket_is_audited(live, ws):
    w = live
    conversation = make_conversation(w)
    with scopes_disabled():
        first = services.send_message(conversation, w.alice, "Your X-ray looks clear.")
        services.send_message(conversation, w.paul, "Thank you!")

    async def scenario():
        paul = await open_from_peer(ws, f"/ws/h/{w.a.slug}/chat/{conversation.pk}/", w.paul)
        await paul.send_json_to({"type": "sync", "since": first.pk})
        assert [m["body"] for m in (await paul.receive_json_from(timeout=5))["messages"]] == ["Thank you!"]
        await paul.send_json_to({"type": "sync", "since": 10**9})  # nothing new: nothing disclosed
        assert (await paul.receive_json_from(timeout=5))["messages"] == []
        await paul.disconnect()

    run(scenario)
    [event] = events("conversation.sync")
    assert (event.actor, event.hospital, event.ip_address) == (w.paul, w.a, PEER[0])
    assert event.object_id == str(conversation.pk) and event.patient_id == w.paul_record.pk
    assert event.detail == {"via": "websocket", "since": first.pk, "count": 1}


def test_study_status_asked_over_the_socket_is_audited(live, ws):
    w = live
    study = make_study_row(w.paul_record, w.alice)
    with scopes_disabled():
        study_services.set_study_status(study.pk, w.a.pk, StudyStatus.DONE, "Chest X-ray: normal.")

    async def scenario():
        alice = await open_from_peer(ws, f"/ws/h/{w.a.slug}/notifications/", w.alice)
        await alice.send_json_to({"type": "studies", "ids": [study.pk, study.pk + 999]})
        assert (await alice.receive_json_from(timeout=5))["study_id"] == study.pk
        bob = await open_from_peer(ws, f"/ws/h/{w.a.slug}/notifications/", w.bob)
        await bob.send_json_to({"type": "studies", "ids": [study.pk]})  # not his patient: nothing sent
        assert await bob.receive_nothing(timeout=0.3)
        for comm in (alice, bob):
            await comm.disconnect()

    run(scenario)
    [event] = events("study.view_status")
    assert (event.actor, event.hospital, event.ip_address) == (w.alice, w.a, PEER[0])
    assert event.detail == {"via": "websocket", "studies": [study.pk]}


def test_missed_notifications_over_the_socket_are_audited(live, ws):
    w = live
    with scopes_disabled():
        notifications.notify(hospital_id=w.a.pk, user_id=w.alice.pk, kind="new_message", title="New message")

    async def scenario():
        alice = await open_from_peer(ws, f"/ws/h/{w.a.slug}/notifications/", w.alice)
        await alice.send_json_to({"type": "sync", "since": 0})
        assert len((await alice.receive_json_from(timeout=5))["notifications"]) == 1
        await alice.disconnect()

    run(scenario)
    [event] = [e for e in events("notification.sync") if e.detail.get("via") == "websocket"]
    assert (event.actor, event.hospital, event.detail["count"]) == (w.alice, w.a, 1)


def test_refused_sockets_are_audited(live, ws):
    w = live
    conversation = make_conversation(w)

    async def scenario():
        assert await ws.refused(f"/ws/h/{w.a.slug}/chat/{conversation.pk}/", w.bob) == 4403
        assert await ws.refused(f"/ws/h/{w.a.slug}/notifications/", w.dora) == 4404

    run(scenario)
    bob, dora = events("access.refused")
    assert (bob.actor, bob.hospital) == (w.bob, w.a)
    assert bob.detail == {
        "status": 4403,
        "reason": "not a conversation of this user",
        "via": "websocket",
        "conversation": conversation.pk,
    }
    assert (dora.actor, dora.hospital) == (w.dora, w.a)
    assert dora.detail == {"status": 404, "reason": "not a member of this hospital", "slug": w.a.slug}


def test_access_ending_on_an_open_socket_is_not_a_refusal(live, ws):
    """Re-checks of an open socket (here after the membership ends) close it without an
    ``access.refused`` event: nobody asked for anything."""
    w = live
    from apps.accounts.models import Membership

    async def scenario():
        paul = await ws.open(f"/ws/h/{w.a.slug}/notifications/", w.paul)
        await db(lambda: Membership.objects.filter(user=w.paul).update(is_active=False))()
        await paul.send_json_to({"type": "sync", "since": 0})
        assert (await paul.receive_json_from(timeout=5))["type"] == "revoked"
        await paul.disconnect()

    run(scenario)
    assert events("access.refused") == []
