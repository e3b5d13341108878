"""Chat and notification pages: the no-JavaScript fallback, escaping, pagination, unread counts."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib import admin
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.chat import notifications
from apps.chat.models import Conversation, Message, Notification, NotificationKind
from apps.chat.services import send_message
from apps.studies import services as study_services

from .conftest import make_conversation


def conversation_url(w, conversation, **query):
    url = reverse("chat:conversation", args=[w.a.slug, conversation.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def say(conversation, user, body):
    with scopes_disabled():
        return send_message(conversation, user, body)


@pytest.fixture
def convo(world):
    return make_conversation(world)


def test_no_js_form_post_sends_and_redirects(client, world, convo):
    client.force_login(world.paul)
    response = client.post(conversation_url(world, convo), {"body": "When are my results ready?"})
    assert response.status_code == 302
    assert response["Location"] == conversation_url(world, convo) + "#latest"
    with scopes_disabled():
        message = Message.objects.get()
        assert (message.sender, message.body, message.hospital) == (world.paul, "When are my results ready?", world.a)
        note = Notification.objects.get()
        assert (note.user, note.kind) == (world.alice, NotificationKind.NEW_MESSAGE)
        assert AuditEvent.objects.filter(action="message.send", actor=world.paul).count() == 1

    client.force_login(world.alice)
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "When are my results ready?" in page.content.decode()
    with scopes_disabled():
        assert Message.objects.get().read_at is not None  # Alice has now read it
        assert Notification.objects.get().read_at is not None


def test_user_text_is_escaped(client, world, convo):
    say(convo, world.paul, '<script>alert("x")</script><img src=x onerror=alert(1)> & "quotes"')
    client.force_login(world.alice)
    html = client.get(conversation_url(world, convo)).content.decode()
    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert (
        "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; &amp; &quot;quotes&quot;"
        in html
    )


def test_empty_and_too_long_messages_are_refused_with_the_draft_kept(client, world, convo):
    client.force_login(world.alice)
    response = client.post(conversation_url(world, convo), {"body": "   "})
    assert response.status_code == 400
    assert "Please write a message" in response.content.decode()
    response = client.post(conversation_url(world, convo), {"body": "x" * 2001})
    assert response.status_code == 400
    assert "at most 2000 characters" in response.content.decode()
    assert "x" * 2001 in response.content.decode()  # the draft is given back
    with scopes_disabled():
        assert not Message.objects.exists()


def test_rate_limit_on_the_form(client, world, convo, settings):
    settings.CHAT_RATE_LIMIT_MESSAGES = 2
    client.force_login(world.alice)
    for i in range(2):
        assert client.post(conversation_url(world, convo), {"body": f"note {i}"}).status_code == 302
    response = client.post(conversation_url(world, convo), {"body": "third"})
    assert response.status_code == 429
    text = response.content.decode()
    assert "You are sending messages too quickly" in text
    assert "third" in text
    with scopes_disabled():
        assert Message.objects.count() == 2


def test_history_is_paginated_newest_first(client, world, convo):
    with scopes_disabled():  # rows directly: 35 sends would (rightly) hit the rate limit
        for i in range(35):
            Message.objects.create(
                hospital=world.a,
                conversation=convo,
                sender=world.alice if i % 2 else world.paul,
                body=f"message number {i:02d}",
                created_at=convo.created_at + dt.timedelta(minutes=i),
            )
    client.force_login(world.alice)
    first = client.get(conversation_url(world, convo)).content.decode()
    assert "message number 34" in first and "message number 05" in first
    assert "message number 04" not in first
    assert first.index("message number 05") < first.index("message number 34")  # oldest at the top
    assert "Older messages" in first and 'href="?page=2"' in first
    older = client.get(conversation_url(world, convo, page=2)).content.decode()
    assert [f"message number {i:02d}" in older for i in range(6)] == [True] * 5 + [False]
    assert "Newer messages" in older


def test_inbox_shows_unread_counts(client, world, convo):
    say(convo, world.paul, "one")
    say(convo, world.paul, "two")
    say(convo, world.alice, "reply")
    client.force_login(world.alice)
    response = client.get(reverse("chat:inbox", args=[world.a.slug]))
    assert response.status_code == 200
    [row] = list(response.context["conversations"])
    assert row.unread == 2
    assert "2 unread" in response.content.decode()
    client.force_login(world.paul)
    [row] = list(client.get(reverse("chat:inbox", args=[world.a.slug])).context["conversations"])
    assert row.unread == 1


def test_doctor_starts_a_conversation_only_with_assigned_patients_with_a_login(client, world):
    client.force_login(world.alice)
    inbox = client.get(reverse("chat:inbox", args=[world.a.slug]))
    assert list(inbox.context["startable_patients"]) == [world.paul_record]
    response = client.post(reverse("chat:inbox", args=[world.a.slug]), {"patient": world.paul_record.pk})
    with scopes_disabled():
        conversation = Conversation.objects.get()
    assert response["Location"] == conversation_url(world, conversation)
    assert (conversation.patient, conversation.doctor) == (world.paul_record, world.alice)
    # Olga has no login; Bea is in another hospital.
    for patient in (world.other_a, world.bea_record):
        assert client.post(reverse("chat:inbox", args=[world.a.slug]), {"patient": patient.pk}).status_code == 404
    client.force_login(world.bob)
    assert client.post(reverse("chat:inbox", args=[world.a.slug]), {"patient": world.paul_record.pk}).status_code == 404


def test_patient_can_write_to_their_doctor(client, world):
    client.force_login(world.paul)
    inbox = client.get(reverse("chat:inbox", args=[world.a.slug]))
    assert inbox.context["startable_doctors"] == [(world.paul_record, world.alice)]
    response = client.post(
        reverse("chat:inbox", args=[world.a.slug]), {"patient": world.paul_record.pk, "doctor": world.alice.pk}
    )
    assert response.status_code == 302
    response = client.post(
        reverse("chat:inbox", args=[world.a.slug]), {"patient": world.paul_record.pk, "doctor": world.bob.pk}
    )
    assert response.status_code == 404


def test_admin_does_not_read_chats(client, world, convo):
    say(convo, world.paul, "private")
    client.force_login(world.carol)
    assert client.get(conversation_url(world, convo)).status_code == 403
    assert client.get(reverse("chat:inbox", args=[world.a.slug])).status_code == 403
    assert not admin.site.is_registered(Message)


def test_conversation_is_gone_for_both_once_the_assignment_ends(client, world, convo):
    with scopes_disabled():
        study_services.unassign_doctor(world.paul_record, world.alice, actor=world.carol)
    for user in (world.alice, world.paul):
        client.force_login(user)
        assert client.get(conversation_url(world, convo)).status_code == 404
        assert client.post(conversation_url(world, convo), {"body": "hello?"}).status_code == 404
    with scopes_disabled():
        assert not Message.objects.exists()


def test_notifications_page_and_json_fallback(client, world):
    with scopes_disabled():
        first = notifications.notify(
            hospital_id=world.a.pk,
            user_id=world.alice.pk,
            kind="result_ready",
            title="AI read <ready>",
            url="/h/st-mary/",
        )
        second = notifications.notify(hospital_id=world.a.pk, user_id=world.alice.pk, kind="new_message", title="Msg")
        notifications.notify(hospital_id=world.a.pk, user_id=world.bob.pk, kind="new_message", title="Bob's own")
        notifications.notify(hospital_id=world.b.pk, user_id=world.alice.pk, kind="new_message", title="Elsewhere")
    client.force_login(world.alice)
    page = client.get(reverse("chat:notifications", args=[world.a.slug]))
    html = page.content.decode()
    assert "AI read &lt;ready&gt;" in html and "Msg" in html
    assert "Bob&#x27;s own" not in html and "Elsewhere" not in html
    assert "You have 2 unread notifications." in html

    data = json.loads(
        client.get(reverse("chat:notifications_json", args=[world.a.slug]) + f"?since={first.pk}").content
    )
    assert [n["id"] for n in data["notifications"]] == [second.pk]
    assert data["unread"] == 2
    assert client.get(reverse("chat:notifications_json", args=[world.a.slug]) + "?since=x").status_code == 400

    assert client.post(reverse("chat:notifications", args=[world.a.slug])).status_code == 302
    with scopes_disabled():
        assert Notification.objects.filter(user=world.alice, read_at__isnull=True, hospital=world.a).count() == 0
        assert Notification.objects.filter(user=world.bob, read_at__isnull=True).count() == 1


def test_inbox_query_count_does_not_grow_with_conversations(client, world, django_assert_max_num_queries):
    from apps.studies.services import assign_doctor
    from tests.factories import PatientFactory, UserFactory

    client.force_login(world.alice)
    url = reverse("chat:inbox", args=[world.a.slug])
    make_conversation(world)
    with django_assert_max_num_queries(12) as few:
        client.get(url)
    with scopes_disabled():
        for i in range(5):
            user = UserFactory(email=f"patient{i}@example.org")
            record = PatientFactory(hospital=world.a, user=user)
            assign_doctor(record, world.alice)
            convo = Conversation.objects.create(hospital=world.a, patient=record, doctor=world.alice)
            Message.objects.create(hospital=world.a, conversation=convo, sender=user, body="hi")
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(url)
    assert len(response.context["conversations"]) == 6
