"""Logging in through the real login form (django-axes in the loop): e-mail login, lockout after
five failures, one message for every failure, and a lockout that stays on its own account."""

from __future__ import annotations

import pytest
from django.urls import reverse

from apps.accounts.forms import LOGIN_FAILED
from tests.factories import TEST_PASSWORD

LOCKED = (403, 429)


@pytest.fixture
def login_url():
    return reverse("accounts:login")


def attempt(client, login_url, email: str, password: str, ip: str = "198.51.100.10"):
    return client.post(login_url, {"username": email, "password": password}, REMOTE_ADDR=ip)


def is_logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def shown_message(response) -> str:
    """The failure sentence as the page shows it (HTML apostrophes unescaped)."""
    return response.content.decode().replace("&#x27;", "'")


def test_login_page_renders_an_accessible_form(client, db, login_url):
    response = client.get(login_url)
    assert response.status_code == 200
    page = response.content.decode()
    assert '<label for="id_username">' in page and '<label for="id_password">' in page
    assert 'type="email"' in page and 'autocomplete="current-password"' in page


def test_email_login_through_the_form(client, world, login_url):
    response = attempt(client, login_url, world.alice.email, TEST_PASSWORD)
    assert response.status_code == 302 and response["Location"] == reverse("accounts:home")
    assert is_logged_in(client) and int(client.session["_auth_user_id"]) == world.alice.pk
    # and lands in her hospital
    assert client.get(reverse("accounts:home"))["Location"] == "/h/st-mary/"


def test_email_is_the_username(client, world, login_url):
    response = attempt(client, login_url, "Dr Alice Adams", TEST_PASSWORD)
    assert response.status_code == 200 and not is_logged_in(client)


def test_wrong_password_unknown_user_and_locked_account_read_the_same(client, world, login_url):
    wrong = attempt(client, login_url, world.alice.email, "wrong-password")
    unknown = attempt(client, login_url, "nobody@st-mary.example", TEST_PASSWORD)
    assert wrong.status_code == unknown.status_code == 200
    for _ in range(5):
        attempt(client, login_url, world.bob.email, "wrong-password")
    locked = attempt(client, login_url, world.bob.email, TEST_PASSWORD)  # right password, but locked
    assert locked.status_code in LOCKED
    for response in (wrong, unknown, locked):
        assert LOGIN_FAILED in shown_message(response)
    assert not is_logged_in(client)


def test_five_failures_lock_the_account(client, world, login_url):
    for i in range(5):
        response = attempt(client, login_url, world.alice.email, f"wrong-{i}")
        assert not is_logged_in(client)
    assert response.status_code in LOCKED, "the fifth failure locks"
    response = attempt(client, login_url, world.alice.email, TEST_PASSWORD)
    assert response.status_code in LOCKED and not is_logged_in(client)


def test_four_failures_do_not_lock_and_success_resets(client, world, login_url):
    for i in range(4):
        assert attempt(client, login_url, world.alice.email, f"wrong-{i}").status_code == 200
    assert attempt(client, login_url, world.alice.email, TEST_PASSWORD).status_code == 302
    client.logout()
    # the counter started again: four more failures still do not lock
    for i in range(4):
        assert attempt(client, login_url, world.alice.email, f"again-{i}").status_code == 200
    assert attempt(client, login_url, world.alice.email, TEST_PASSWORD).status_code == 302


def test_unknown_accounts_lock_like_real_ones(client, db, login_url):
    """Locking only real accounts would tell an attacker which addresses exist."""
    for i in range(5):
        response = attempt(client, login_url, "ghost@st-mary.example", f"guess-{i}")
    assert response.status_code in LOCKED


def test_lockout_of_one_account_does_not_lock_another(client, world, login_url):
    for i in range(5):
        attempt(client, login_url, world.alice.email, f"wrong-{i}")
    assert attempt(client, login_url, world.alice.email, TEST_PASSWORD).status_code in LOCKED
    # Bob, from the same address, logs in fine.
    response = attempt(client, login_url, world.bob.email, TEST_PASSWORD)
    assert response.status_code == 302 and int(client.session["_auth_user_id"]) == world.bob.pk


def test_locked_account_can_still_log_in_from_another_address(client, world, login_url):
    """Lockout is per account and address, so an attacker cannot lock a doctor out everywhere."""
    for i in range(5):
        attempt(client, login_url, world.alice.email, f"wrong-{i}", ip="198.51.100.66")
    assert attempt(client, login_url, world.alice.email, TEST_PASSWORD, ip="198.51.100.66").status_code in LOCKED
    assert attempt(client, login_url, world.alice.email, TEST_PASSWORD, ip="192.0.2.1").status_code == 302


def test_inactive_user_gets_the_same_message(client, world, login_url):
    world.carol.is_active = False
    world.carol.save()
    response = attempt(client, login_url, world.carol.email, TEST_PASSWORD)
    assert response.status_code == 200 and LOGIN_FAILED in shown_message(response)
    assert not is_logged_in(client)


def test_logout_needs_post_and_ends_the_session(client, world, login_url):
    attempt(client, login_url, world.alice.email, TEST_PASSWORD)
    assert client.get(reverse("accounts:logout")).status_code == 405
    assert is_logged_in(client)
    assert client.post(reverse("accounts:logout")).status_code == 302
    assert not is_logged_in(client)


def test_a_platform_admin_without_a_hospital_lands_in_the_admin(client, db):
    from tests.factories import UserFactory

    root = UserFactory(email="root@imagemedix.example", is_staff=True, is_superuser=True)
    client.force_login(root)
    response = client.get(reverse("accounts:home"))
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")
