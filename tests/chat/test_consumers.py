"""WebSocket tests against the real stack: imagemedix.asgi.application (origin check, session
auth, routing), channels-redis on the local Redis, and a transactional database."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from apps.chat import notifications
from apps.chat.models import Message, Notification, NotificationKind
from apps.studies import services as study_services
from apps.studies.models import CareAssignment, StudyStatus

from .conftest import db, make_conversation, make_study_row, run

pytestmark = pytest.mark.integration


def notif_path(w, hospital=None) -> str:
    return f"/ws/h/{(hospital or w.a).slug}/notifications/"


def chat_path(w, conversation) -> str:
    return f"/ws/h/{w.a.slug}/chat/{conversation.pk}/"


# --- notifications ------------------------------------------------------------------------------


def test_study_status_reaches_the_assigned_doctor_only(live, ws):
    w = live
    study = make_study_row(w.paul_record, w.alice)

    async def scenario():
        alice = await ws.open(notif_path(w), w.alice)
        bob = await ws.open(notif_path(w), w.bob)
        paul = await ws.open(notif_path(w), w.paul)
        dora = await ws.open(notif_path(w, w.b), w.dora)
        assert alice.hello == {"type": "hello", "unread": 0, "last_id": 0}

        await db(study_services.set_study_status)(study.pk, w.a.pk, StudyStatus.PROCESSING, "AI read in progress.")
        event = await alice.receive_json_from(timeout=5)
        assert event == {
            "type": "study.status",
            "study_id": study.pk,
            "status": "processing",
            "label": "AI read in progress",
            "message": "AI read in progress.",
        }

        await db(study_services.set_study_status)(study.pk, w.a.pk, StudyStatus.DONE, "Chest X-ray: normal.")
        status = await alice.receive_json_from(timeout=5)
        assert (status["type"], status["status"], status["label"]) == ("study.status", "done", "AI read ready")
        pushed = await alice.receive_json_from(timeout=5)
        assert pushed["type"] == "notification"
        assert pushed["unread"] == 1
        assert pushed["notification"]["kind"] == "result_ready"
        assert pushed["notification"]["data"] == {"study_id": study.pk, "status": "done"}
        assert "Paul Potter" in pushed["notification"]["title"]

        # Nobody else hears about Paul's study: not Bob (same hospital, not assigned), not Paul
        # (patients never see AI-only results), not Dora (other hospital).
        for other in (bob, paul, dora):
            assert await other.receive_nothing(timeout=0.3)
        for comm in (alice, bob, paul, dora):
            await comm.disconnect()

    run(scenario)
    with scopes_disabled():
        rows = list(Notification.objects.values_list("user__email", "kind"))
    assert rows == [("alice@st-mary.example", NotificationKind.RESULT_READY)]


def test_page_asks_for_the_status_it_may_have_missed(live, ws):
    """A study that finished before the page's socket connected: asking returns its status, and
    only for studies the user may see (Bob is not assigned to Paul; Dora is in another hospital)."""
    w = live
    study = make_study_row(w.paul_record, w.alice)
    with scopes_disabled():
        study_services.set_study_status(study.pk, w.a.pk, StudyStatus.DONE, "Chest X-ray: normal.")

    async def scenario():
        alice = await ws.open(notif_path(w), w.alice)
        await alice.send_json_to({"type": "studies", "ids": [study.pk, study.pk + 999, "x"]})
        event = await alice.receive_json_from(timeout=5)
        assert event == {
            "type": "study.status",
            "study_id": study.pk,
            "status": "done",
            "label": "AI read ready",
            "message": "Chest X-ray: normal.",
        }
        assert await alice.receive_nothing(timeout=0.3)

        for other, path in ((w.bob, notif_path(w)), (w.dora, notif_path(w, w.b))):
            comm = await ws.open(path, other)
            await comm.send_json_to({"type": "studies", "ids": [study.pk]})
            assert await comm.receive_nothing(timeout=0.3)
            await comm.disconnect()

        await alice.send_json_to({"type": "studies", "ids": "all"})
        error = await alice.receive_json_from(timeout=5)
        assert (error["type"], error["code"]) == ("error", "invalid")
        await alice.disconnect()

    run(scenario)


def test_failed_read_notifies_doctor_and_uploader(live, ws):
    w = live
    study = make_study_row(w.paul_record, w.carol)  # uploaded by the hospital admin

    async def scenario():
        alice = await ws.open(notif_path(w), w.alice)
        carol = await ws.open(notif_path(w), w.carol)
        await db(study_services.set_study_status)(study.pk, w.a.pk, StudyStatus.FAILED, "The image is not an X-ray.")
        for comm in (alice, carol):
            status = await comm.receive_json_from(timeout=5)
            assert (status["type"], status["status"]) == ("study.status", "failed")
            pushed = await comm.receive_json_from(timeout=5)
            assert pushed["notification"]["kind"] == "study_failed"
            assert pushed["notification"]["body"] == "The image is not an X-ray."
            await comm.disconnect()

    run(scenario)


def test_reconnect_sync_returns_missed_notifications_and_ack_marks_read(live, ws):
    w = live

    async def scenario():
        first = await ws.open(notif_path(w), w.alice)
        assert first.hello["last_id"] == 0
        await first.disconnect()

        # While Alice is offline: two notifications (the pushes reach nobody).
        sent = []
        for title in ("Report signed for Paul Potter", "New message from Paul Potter"):
            sent.append(
                await db(notifications.notify)(
                    hospital_id=w.a.pk, user_id=w.alice.pk, kind=NotificationKind.REPORT_SIGNED, title=title, url="/x/"
                )
            )
        # And one for Bob, which Alice must never see.
        await db(notifications.notify)(hospital_id=w.a.pk, user_id=w.bob.pk, kind="new_message", title="for bob")

        again = await ws.open(notif_path(w), w.alice)
        assert again.hello["unread"] == 2
        assert again.hello["last_id"] == sent[-1].pk
        await again.send_json_to({"type": "sync", "since": 0})
        synced = await again.receive_json_from(timeout=5)
        assert synced["type"] == "sync"
        assert [n["id"] for n in synced["notifications"]] == [n.pk for n in sent]
        assert [n["title"] for n in synced["notifications"]] == [n.title for n in sent]

        await again.send_json_to({"type": "sync", "since": sent[0].pk})
        assert [n["id"] for n in (await again.receive_json_from(timeout=5))["notifications"]] == [sent[1].pk]

        await again.send_json_to({"type": "ack", "up_to": sent[0].pk})
        assert await again.receive_json_from(timeout=5) == {"type": "unread", "unread": 1}
        await again.send_json_to({"type": "ack", "up_to": "nonsense"})
        assert (await again.receive_json_from(timeout=5))["code"] == "invalid"
        await again.disconnect()

    run(scenario)
    with scopes_disabled():
        assert Notification.objects.get(user=w.bob).read_at is None


def test_notification_is_pushed_live_after_commit(live, ws):
    w = live

    async def scenario():
        alice = await ws.open(notif_path(w), w.alice)
        created = await db(notifications.notify)(
            hospital_id=w.a.pk, user_id=w.alice.pk, kind="report_signed", title="Report signed", url="/h/st-mary/"
        )
        pushed = await alice.receive_json_from(timeout=5)
        assert pushed["notification"]["id"] == created.pk
        assert pushed["unread"] == 1
        await alice.disconnect()

    run(scenario)


# --- chat ---------------------------------------------------------------------------------------


def test_chat_between_alice_and_paul_both_directions_persisted(live, ws):
    w = live
    conversation = make_conversation(w)

    async def scenario():
        alice = await ws.open(chat_path(w, conversation), w.alice)
        paul = await ws.open(chat_path(w, conversation), w.paul)
        paul_notes = await ws.open(notif_path(w), w.paul)

        await alice.send_json_to({"type": "message", "body": "  Your X-ray looks clear. <script>x()</script> "})
        for comm in (alice, paul):
            got = await comm.receive_json_from(timeout=5)
            assert got["type"] == "message"
            assert got["message"]["body"] == "Your X-ray looks clear. <script>x()</script>"
            assert got["message"]["sender_id"] == w.alice.pk
            assert got["message"]["sender_name"] == "Dr Alice Adams"
        note = await paul_notes.receive_json_from(timeout=5)
        assert note["notification"]["kind"] == "new_message"
        assert note["notification"]["title"] == "New message from Dr Alice Adams"
        assert note["notification"]["url"] == f"/h/st-mary/messages/{conversation.pk}/"

        await paul.send_json_to({"type": "message", "body": "Thank you, doctor!"})
        for comm in (alice, paul):
            got = await comm.receive_json_from(timeout=5)
            assert (got["message"]["sender_id"], got["message"]["body"]) == (w.paul.pk, "Thank you, doctor!")

        # Paul reads Alice's message.
        first_id = await db(lambda: Message.objects.order_by("pk").first().pk)()
        await paul.send_json_to({"type": "read", "up_to": first_id})
        await paul.send_json_to({"type": "message", "body": ""})
        assert (await paul.receive_json_from(timeout=5))["code"] == "invalid"

        # Reconnect: history after a given id.
        await paul.send_json_to({"type": "sync", "since": first_id})
        history = await paul.receive_json_from(timeout=5)
        assert [m["body"] for m in history["messages"]] == ["Thank you, doctor!"]
        for comm in (alice, paul, paul_notes):
            await comm.disconnect()

    run(scenario)
    with scopes_disabled():
        rows = list(Message.objects.order_by("pk").values_list("sender__email", "body", "read_at"))
        assert [(r[0], r[1]) for r in rows] == [
            ("alice@st-mary.example", "Your X-ray looks clear. <script>x()</script>"),
            ("paul@patient.example", "Thank you, doctor!"),
        ]
        assert rows[0][2] is not None  # Paul read it
        assert rows[1][2] is None  # Alice has not (her page was not open on it)
        assert Notification.objects.get(user=w.paul).read_at is not None  # read with the message


def test_chat_refused_for_everyone_else(live, ws):
    w = live
    conversation = make_conversation(w)
    path = chat_path(w, conversation)

    async def scenario():
        assert await ws.refused(path, w.bob) == 4403  # doctor, not assigned
        assert await ws.refused(path, w.carol) == 4403  # hospital admin: does not read chats
        assert await ws.refused(path, w.dora) == 4404  # other hospital
        assert await ws.refused(path) == 4401  # anonymous
        assert await ws.refused(f"/ws/h/{w.b.slug}/chat/{conversation.pk}/", w.alice) == 4404
        # A foreign Origin is refused before anything else (cross-site WebSocket hijacking).
        assert await ws.refused(path, w.alice, origin="http://evil.example") == 1000
        assert await ws.refused(path, w.alice, origin=None) == 1000
        assert await ws.refused(notif_path(w), w.alice, origin="https://attacker.example") == 1000

    run(scenario)


def test_unassignment_closes_open_sockets_and_refuses_further_messages(live, ws):
    w = live
    conversation = make_conversation(w)

    async def scenario():
        alice = await ws.open(chat_path(w, conversation), w.alice)
        paul = await ws.open(chat_path(w, conversation), w.paul)
        await alice.send_json_to({"type": "message", "body": "Before"})
        for comm in (alice, paul):
            assert (await comm.receive_json_from(timeout=5))["message"]["body"] == "Before"

        assert await db(study_services.unassign_doctor)(w.paul_record, w.alice, actor=w.carol)

        for comm in (alice, paul):
            revoked = await comm.receive_json_from(timeout=5)
            assert revoked["type"] == "revoked"
            assert "no longer caring" in revoked["message"]
            closed = await comm.receive_output(timeout=5)
            assert closed == {"type": "websocket.close", "code": 4403}

        # The same socket accepts nothing more, and a new one is refused.
        await paul.send_json_to({"type": "message", "body": "After"})
        assert await paul.receive_nothing(timeout=0.3)
        assert await ws.refused(chat_path(w, conversation), w.paul) == 4403
        assert await ws.refused(chat_path(w, conversation), w.alice) == 4403

    run(scenario)
    with scopes_disabled():
        assert list(Message.objects.values_list("body", flat=True)) == ["Before"]


def test_every_message_rechecks_the_assignment(live, ws):
    """Even if the revocation push is lost, the next message on an open socket is refused."""
    w = live
    conversation = make_conversation(w)

    async def scenario():
        paul = await ws.open(chat_path(w, conversation), w.paul)
        # Remove the assignment without the signal (as if the push never arrived).
        await db(lambda: CareAssignment.objects.filter(patient=w.paul_record, doctor=w.alice).delete())()
        await paul.send_json_to({"type": "message", "body": "Are you there?"})
        revoked = await paul.receive_json_from(timeout=5)
        assert revoked["type"] == "revoked"
        assert await paul.receive_output(timeout=5) == {"type": "websocket.close", "code": 4403}

    run(scenario)
    with scopes_disabled():
        assert not Message.objects.exists()


def test_membership_is_rechecked_on_every_message(live, ws):
    w = live
    conversation = make_conversation(w)

    async def scenario():
        paul = await ws.open(chat_path(w, conversation), w.paul)
        await db(lambda: w.paul.memberships.update(is_active=False))()
        await paul.send_json_to({"type": "message", "body": "Hello?"})
        assert (await paul.receive_json_from(timeout=5))["type"] == "revoked"
        assert (await paul.receive_output(timeout=5))["code"] == 4403

    run(scenario)
    with scopes_disabled():
        assert not Message.objects.exists()


def test_rate_limit_over_the_socket(live, ws, settings):
    settings.CHAT_RATE_LIMIT_MESSAGES = 3
    w = live
    conversation = make_conversation(w)

    async def scenario():
        alice = await ws.open(chat_path(w, conversation), w.alice)
        for i in range(3):
            await alice.send_json_to({"type": "message", "body": f"message {i}"})
            assert (await alice.receive_json_from(timeout=5))["type"] == "message"
        await alice.send_json_to({"type": "message", "body": "one too many"})
        error = await alice.receive_json_from(timeout=5)
        assert error["type"] == "error"
        assert error["code"] == "rate_limited"
        assert "too quickly" in error["message"]
        # Paul has his own allowance.
        paul = await ws.open(chat_path(w, conversation), w.paul)
        await paul.send_json_to({"type": "message", "body": "hi"})
        assert (await paul.receive_json_from(timeout=5))["message"]["body"] == "hi"
        for comm in (alice, paul):
            await comm.disconnect()

    run(scenario)
    with scopes_disabled():
        assert Message.objects.filter(sender=w.alice).count() == 3


def test_malformed_frames_get_an_error_not_a_crash(live, ws):
    w = live
    conversation = make_conversation(w)

    async def scenario():
        alice = await ws.open(chat_path(w, conversation), w.alice)
        await alice.send_to(text_data="not json")
        await alice.send_to(bytes_data=b"\x00\x01")
        await alice.send_to(text_data='{"type": "message", "body": "' + "x" * 20_000 + '"}')
        await alice.send_json_to(["a", "list"])
        await alice.send_json_to({"type": "message", "body": 42})
        for _ in range(5):
            assert (await alice.receive_json_from(timeout=5))["code"] == "invalid"
        await alice.send_json_to({"type": "message", "body": "still here"})
        assert (await alice.receive_json_from(timeout=5))["message"]["body"] == "still here"
        await alice.disconnect()

    run(scenario)
