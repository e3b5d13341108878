"""Open sockets end with the access they were opened with (issue 8, finding 1).

Against the real stack (imagemedix.asgi.application, channels-redis on the local Redis, a
transactional database): logout, a password change, a deactivated membership and an ended care
assignment close the user's open sockets at once, and nothing reaches them afterwards. Without
any announcement, the next inbound frame or outbound push re-validates and closes too. And
(finding 5) a doctor taken off the care team no longer hears about a study they uploaded.
"""

from __future__ import annotations

from importlib import import_module

import pytest
from django.conf import settings
from django_scopes import scopes_disabled

from apps.accounts.models import Membership
from apps.accounts.services import deactivate_member
from apps.chat import notifications
from apps.chat.models import Message, Notification
from apps.chat.receivers import study_recipients
from apps.studies import services as study_services
from apps.studies.models import StudyStatus
from tests.auth import Client

from .conftest import db, make_conversation, make_study_row, run
from .test_consumers import chat_path, notif_path

pytestmark = pytest.mark.integration

NEW_PASSWORD = "Another-long-passphrase-42"


def logged_in_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


async def expect_closed(comm, code: int) -> None:
    """The socket says why, then closes with ``code``."""
    revoked = await comm.receive_json_from(timeout=5)
    assert revoked["type"] == "revoked", revoked
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": code}


async def expect_nothing_reaches(w, conversation, *comms) -> None:
    """A notification for Alice and a message from Paul: none of ``comms`` gets either."""
    await db(notifications.notify)(
        hospital_id=w.a.pk, user_id=w.alice.pk, kind="report_signed", title="Report signed", url="/h/st-mary/"
    )
    await db(_send_as_paul)(conversation)
    for comm in comms:
        assert await comm.receive_nothing(timeout=0.5)


def _send_as_paul(conversation) -> None:
    from apps.chat.services import send_message

    send_message(conversation, conversation.patient.user, "Are you there, doctor?")


def test_logout_closes_that_sessions_sockets_only(live, ws):
    w = live
    conversation = make_conversation(w)
    browser = logged_in_client(w.alice)
    ws.cookies[w.alice.pk] = browser.cookies["sessionid"].value
    other_device = Client()
    other_device.force_login(w.alice)

    async def scenario():
        notes = await ws.open(notif_path(w), w.alice)
        chat = await ws.open(chat_path(w, conversation), w.alice)
        ws.cookies[w.alice.pk] = other_device.cookies["sessionid"].value
        phone = await ws.open(notif_path(w), w.alice)

        response = await db(browser.post)("/accounts/logout/")
        assert response.status_code == 302
        for comm in (notes, chat):
            await expect_closed(comm, 4401)
        await expect_nothing_reaches(w, conversation, notes, chat)

        # The same user's other session is still logged in: its socket stays and gets the push.
        pushed = await phone.receive_json_from(timeout=5)
        assert (pushed["type"], pushed["notification"]["title"]) == ("notification", "Report signed")
        await phone.disconnect()

    run(scenario)


def test_password_change_closes_every_socket_of_the_user(live, ws):
    w = live
    conversation = make_conversation(w)
    browser = logged_in_client(w.alice)

    async def scenario():
        # One socket on the session that changes the password, one on another session.
        elsewhere = await ws.open(chat_path(w, conversation), w.alice)
        ws.cookies[w.alice.pk] = browser.cookies["sessionid"].value
        here = await ws.open(notif_path(w), w.alice)

        response = await db(browser.post)(
            "/accounts/password/change/",
            {"old_password": "x", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        )
        assert response.status_code == 200  # wrong old password: nothing changed, nothing closes
        assert await here.receive_nothing(timeout=0.3)
        await db(_set_password)(w.alice, "A-new-password-for-alice-1")
        for comm in (here, elsewhere):
            await expect_closed(comm, 4401)
        await expect_nothing_reaches(w, conversation, here, elsewhere)

    run(scenario)


def _set_password(user, password: str) -> None:
    user.set_password(password)
    user.save()


def test_password_change_page_closes_the_changing_sessions_socket_too(live, ws):
    """Django cycles the session key on a password change: the socket on the old key closes (the
    page the user lands on opens a new one with the new key)."""
    w = live
    _set_password(w.alice, "Old-password-for-alice-1")
    browser = logged_in_client(w.alice)
    ws.cookies[w.alice.pk] = browser.cookies["sessionid"].value

    async def scenario():
        notes = await ws.open(notif_path(w), w.alice)
        response = await db(browser.post)(
            "/accounts/password/change/",
            {"old_password": "Old-password-for-alice-1", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        )
        assert response.status_code == 302
        await expect_closed(notes, 4401)
        # The page's session is still logged in under its new key, and a new socket opens.
        ws.cookies[w.alice.pk] = browser.cookies["sessionid"].value
        again = await ws.open(notif_path(w), w.alice)
        await again.disconnect()

    run(scenario)


def test_deactivation_closes_the_members_sockets(live, ws):
    w = live
    conversation = make_conversation(w)
    with scopes_disabled():
        membership = Membership.objects.get(user=w.paul, hospital=w.a)

    async def scenario():
        chat = await ws.open(chat_path(w, conversation), w.paul)
        notes = await ws.open(notif_path(w), w.paul)
        alice = await ws.open(chat_path(w, conversation), w.alice)

        await db(deactivate_member)(membership, actor=w.carol)
        for comm in (chat, notes):
            await expect_closed(comm, 4403)
        await db(notifications.notify)(
            hospital_id=w.a.pk, user_id=w.paul.pk, kind="report_signed", title="Report signed", url="/h/st-mary/"
        )
        await alice.send_json_to({"type": "message", "body": "Paul, your results are in."})
        assert (await alice.receive_json_from(timeout=5))["type"] == "message"  # Alice is unaffected
        for comm in (chat, notes):
            assert await comm.receive_nothing(timeout=0.5)
        await alice.disconnect()

    run(scenario)


def test_unassignment_closes_the_chat_and_keeps_the_notification_socket(live, ws):
    w = live
    conversation = make_conversation(w)

    async def scenario():
        chat = await ws.open(chat_path(w, conversation), w.alice)
        notes = await ws.open(notif_path(w), w.alice)
        assert await db(study_services.unassign_doctor)(w.paul_record, w.alice, actor=w.carol)
        await expect_closed(chat, 4403)
        # Alice is still a doctor here: her notifications keep coming, the chat does not.
        await db(notifications.notify)(
            hospital_id=w.a.pk, user_id=w.alice.pk, kind="report_signed", title="Report signed", url="/h/st-mary/"
        )
        assert (await notes.receive_json_from(timeout=5))["type"] == "notification"
        assert await chat.receive_nothing(timeout=0.5)
        await notes.disconnect()

    run(scenario)


def _end_session(session_key: str) -> None:
    import_module(settings.SESSION_ENGINE).SessionStore(session_key).delete()


def test_every_push_rechecks_the_session_even_without_an_announcement(live, ws):
    """The session ends behind the socket's back (expired, deleted): the next push is withheld."""
    w = live
    conversation = make_conversation(w)

    async def scenario():
        notes = await ws.open(notif_path(w), w.alice)
        chat = await ws.open(chat_path(w, conversation), w.alice)
        await db(_end_session)(ws.cookies[w.alice.pk])
        await db(notifications.notify)(
            hospital_id=w.a.pk, user_id=w.alice.pk, kind="report_signed", title="Report signed", url="/h/st-mary/"
        )
        await expect_closed(notes, 4401)
        await db(_send_as_paul)(conversation)
        await expect_closed(chat, 4401)

    run(scenario)
    with scopes_disabled():
        assert Message.objects.count() == 1  # Paul's, stored; it just never reached Alice


def test_every_push_rechecks_the_membership(live, ws):
    """Paul's membership is switched off behind the socket's back: Alice's next message is not
    forwarded to him; his socket closes instead."""
    w = live
    conversation = make_conversation(w)

    async def scenario():
        alice = await ws.open(chat_path(w, conversation), w.alice)
        paul = await ws.open(chat_path(w, conversation), w.paul)
        await db(lambda: Membership.objects.filter(user=w.paul).update(is_active=False))()
        await alice.send_json_to({"type": "message", "body": "Your results are in."})
        assert (await alice.receive_json_from(timeout=5))["type"] == "message"
        await expect_closed(paul, 4403)
        await alice.disconnect()

    run(scenario)


# --- finding 5: who hears about a study is decided at send time ---------------------------------


def test_doctor_taken_off_the_care_team_no_longer_hears_about_their_upload(live, ws):
    w = live
    study = make_study_row(w.paul_record, w.alice)  # Alice uploaded it while caring for Paul
    with scopes_disabled():
        study_services.unassign_doctor(w.paul_record, w.alice, actor=w.carol)
        study_services.assign_doctor(w.paul_record, w.bob, actor=w.carol)

    async def scenario():
        alice = await ws.open(notif_path(w), w.alice)
        bob = await ws.open(notif_path(w), w.bob)
        await db(study_services.set_study_status)(study.pk, w.a.pk, StudyStatus.DONE, "Chest X-ray: pneumonia.")
        status = await bob.receive_json_from(timeout=5)
        assert (status["type"], status["study_id"]) == ("study.status", study.pk)
        pushed = await bob.receive_json_from(timeout=5)
        assert "Paul Potter (A-0001)" in pushed["notification"]["title"]
        assert await alice.receive_nothing(timeout=0.5)
        for comm in (alice, bob):
            await comm.disconnect()

    run(scenario)
    with scopes_disabled():
        assert list(Notification.objects.values_list("user__email", flat=True)) == ["bob@st-mary.example"]


def test_recipients_are_the_care_team_now_and_an_uploader_who_may_still_see_the_study(world):
    w = world
    by_alice = make_study_row(w.paul_record, w.alice)
    by_carol = make_study_row(w.paul_record, w.carol)  # the hospital admin sees every study
    with scopes_disabled():
        assert study_recipients(by_alice) == [w.alice.pk]
        assert study_recipients(by_carol) == sorted([w.alice.pk, w.carol.pk])
        Membership.objects.filter(user=w.alice).update(is_active=False)  # Alice left the hospital
        assert study_recipients(by_alice) == []
        assert study_recipients(by_carol) == [w.carol.pk]
