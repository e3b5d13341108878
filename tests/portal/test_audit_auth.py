"""Authentication events in the audit trail, through the real pages (django-axes in the loop): a
login, a failed login (the e-mail tried and the address, never the password), a logout, and a
password change on the password page and by a reset link. All are platform-level (no hospital)."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import default_token_generator
from django.core.management import call_command
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from tests.factories import TEST_PASSWORD

IP = "203.0.113.7"
NEW_PASSWORD = "a-brand-new-passphrase-42"


_since: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _only_events_of_the_test(world):
    """Ignore what setting up the personas wrote (the factory sets each password after creating)."""
    with scopes_disabled():
        _since["id"] = AuditEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def events(action: str) -> list[AuditEvent]:
    with scopes_disabled():
        found = AuditEvent.objects.filter(action=action, id__gt=_since["id"])
        return list(found.select_related("actor", "hospital"))


def the_event(action: str) -> AuditEvent:
    found = events(action)
    assert len(found) == 1, f"expected one {action!r} event, found {len(found)}"
    return found[0]


def log_in(client, email: str, password: str):
    return client.post(reverse("accounts:login"), {"username": email, "password": password}, REMOTE_ADDR=IP)


def test_login_is_audited(client, world):
    assert log_in(client, world.alice.email, TEST_PASSWORD).status_code == 302
    event = the_event("auth.login")
    assert event.actor == world.alice and event.hospital is None and event.ip_address == IP
    assert events("auth.login_failed") == []


@pytest.mark.parametrize("known", [True, False], ids=["wrong-password", "unknown-account"])
def test_failed_login_is_audited_without_the_password(client, world, known):
    email = world.alice.email if known else "nobody@st-mary.example"
    secret = "wrong-but-Secret-9137"
    response = log_in(client, email, secret)
    assert response.status_code == 200 and "_auth_user_id" not in client.session
    event = the_event("auth.login_failed")
    assert event.actor is None and event.hospital is None and event.ip_address == IP
    assert event.detail == {"email": email}
    stored = json.dumps(event.detail) + event.object_repr + event.object_id
    assert secret not in stored and "password" not in stored
    assert events("auth.login") == []


def test_a_locked_out_attempt_is_audited_as_failed_too(client, world):
    for i in range(5):
        log_in(client, world.bob.email, f"wrong-{i}")
    log_in(client, world.bob.email, TEST_PASSWORD)  # right password, but locked
    assert len(events("auth.login_failed")) == 6
    assert events("auth.login") == []
    for event in events("auth.login_failed"):
        assert TEST_PASSWORD not in json.dumps(event.detail)


def test_logout_is_audited(client, world):
    log_in(client, world.alice.email, TEST_PASSWORD)
    assert client.post(reverse("accounts:logout"), REMOTE_ADDR=IP).status_code == 302
    event = the_event("auth.logout")
    assert event.actor == world.alice and event.hospital is None and event.ip_address == IP


def test_logout_without_a_session_writes_nothing(client):
    client.post(reverse("accounts:logout"), REMOTE_ADDR=IP)
    assert events("auth.logout") == []


def test_password_change_on_the_password_page_is_audited(client, world):
    log_in(client, world.alice.email, TEST_PASSWORD)
    response = client.post(
        reverse("accounts:password_change"),
        {"old_password": TEST_PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        REMOTE_ADDR=IP,
    )
    assert response.status_code == 302
    event = the_event("auth.password_change")
    assert event.actor == world.alice and event.hospital is None and event.ip_address == IP
    assert event.object_type == "accounts.user" and event.object_id == str(world.alice.pk)
    assert NEW_PASSWORD not in json.dumps(event.detail) and TEST_PASSWORD not in json.dumps(event.detail)


def test_a_refused_password_change_writes_nothing(client, world):
    log_in(client, world.alice.email, TEST_PASSWORD)
    response = client.post(
        reverse("accounts:password_change"),
        {"old_password": "not-her-password", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
        REMOTE_ADDR=IP,
    )
    assert response.status_code == 200
    assert events("auth.password_change") == []


def test_password_reset_completion_is_audited(client, world):
    uid = urlsafe_base64_encode(force_bytes(world.alice.pk))
    token = default_token_generator.make_token(world.alice)
    # The link redirects to a URL without the token (kept in the session), which takes the POST.
    link = client.get(reverse("accounts:password_reset_confirm", kwargs={"uidb64": uid, "token": token}))
    assert link.status_code == 302
    response = client.post(
        link["Location"], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, REMOTE_ADDR=IP
    )
    assert response.status_code == 302 and response["Location"] == reverse("accounts:password_reset_complete")
    event = the_event("auth.password_change")
    assert event.actor == world.alice and event.hospital is None and event.ip_address == IP
    assert event.object_id == str(world.alice.pk)


def test_an_admin_setting_the_password_is_the_actor(client, world):
    world.carol.is_staff = world.carol.is_superuser = True
    world.carol.save()
    client.force_login(world.carol, backend="django.contrib.auth.backends.ModelBackend")
    url = reverse("admin:auth_user_password_change", args=[world.alice.pk])
    response = client.post(
        url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"}, REMOTE_ADDR=IP
    )
    assert response.status_code == 302
    event = the_event("auth.password_change")
    assert event.actor == world.carol and event.ip_address == IP
    assert event.object_id == str(world.alice.pk) and event.detail == {"user": world.alice.pk}


def test_changepassword_outside_a_request_has_no_actor(world, monkeypatch):
    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)
    call_command("changepassword", world.alice.email, stdout=io.StringIO())
    event = the_event("auth.password_change")
    assert event.actor is None and event.ip_address is None and event.object_id == str(world.alice.pk)


def test_the_login_rehash_is_not_a_password_change(client, world, settings):
    # Stored with PBKDF2, the first hasher is MD5 in tests: the login upgrades the hash.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    with scopes_disabled():
        type(world.alice).objects.filter(pk=world.alice.pk).update(
            password=make_password(TEST_PASSWORD, hasher="pbkdf2_sha256")
        )
    assert log_in(client, world.alice.email, TEST_PASSWORD).status_code == 302
    world.alice.refresh_from_db()
    assert world.alice.password.startswith("md5$"), "the hash was upgraded"
    assert events("auth.password_change") == []
