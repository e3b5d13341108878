"""Chat services and notification API, without sockets (run on SQLite or PostgreSQL)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django_scopes import scopes_disabled

from apps.accounts.tenancy import resolve_tenant
from apps.chat import notifications
from apps.chat.models import Conversation, Notification, NotificationKind
from apps.chat.services import ChatAccessDenied, RateLimited, send_message, start_conversation
from apps.studies.models import Study, StudyStatus
from apps.studies.services import set_study_status

from .conftest import make_conversation, make_study_row


@pytest.fixture
def convo(world):
    return make_conversation(world)


def test_only_parties_may_send(world, convo):
    with scopes_disabled():
        for outsider in (world.bob, world.carol, world.dora):
            with pytest.raises(ChatAccessDenied):
                send_message(convo, outsider, "hello")


def test_conversation_needs_an_assignment_and_a_login(world):
    with scopes_disabled():
        with pytest.raises(ChatAccessDenied):
            start_conversation(world.paul_record, world.bob, actor=world.bob)
        with pytest.raises(ValidationError):
            start_conversation(world.other_a, world.alice, actor=world.alice)
        with pytest.raises(ChatAccessDenied):  # someone else starting it on their behalf
            start_conversation(world.paul_record, world.alice, actor=world.carol)


def test_rate_limit_is_per_user(world, convo, settings):
    settings.CHAT_RATE_LIMIT_MESSAGES = 2
    with scopes_disabled():
        send_message(convo, world.alice, "1")
        send_message(convo, world.alice, "2")
        with pytest.raises(RateLimited):
            send_message(convo, world.alice, "3")
        send_message(convo, world.paul, "his own allowance")


def test_access_helpers(world, convo):
    with scopes_disabled():

        def visible(user):
            return list(Conversation.objects.visible_to(resolve_tenant(user, world.a.slug)))

        assert visible(world.alice) == [convo]
        assert visible(world.paul) == [convo]
        assert visible(world.bob) == []
        assert visible(world.carol) == []  # admins do not read chats


def test_notify_keeps_links_inside_the_portal(world):
    with scopes_disabled():
        for url in ("https://evil.example/", "//evil.example/x", "javascript:alert(1)"):
            with pytest.raises(ValueError):
                notifications.notify(
                    hospital_id=world.a.pk, user_id=world.alice.pk, kind="new_message", title="x", url=url
                )
        with pytest.raises(ValueError):
            notifications.notify(hospital_id=world.a.pk, user_id=world.alice.pk, kind="nonsense", title="x")


def test_finished_study_creates_notifications_for_its_doctors(world, django_capture_on_commit_callbacks):
    study = make_study_row(world.paul_record, world.alice)
    with django_capture_on_commit_callbacks(execute=True):
        set_study_status(study.pk, world.a.pk, StudyStatus.PROCESSING, "Working.")
    with scopes_disabled():
        assert not Notification.objects.exists()  # in-between states are transient events only
    with django_capture_on_commit_callbacks(execute=True):
        set_study_status(study.pk, world.a.pk, StudyStatus.DONE, "Chest X-ray: normal.")
    with scopes_disabled():
        note = Notification.objects.get()
        assert (note.user, note.hospital, note.kind) == (world.alice, world.a, NotificationKind.RESULT_READY)
        assert note.data == {"study_id": study.pk, "status": "done"}
        assert Study.objects.get(pk=study.pk).status == StudyStatus.DONE
