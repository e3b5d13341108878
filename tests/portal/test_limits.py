"""Limits (issue 8): the per-account sign-in lockout on top of the per-(account, address) one, and
how a pause is lifted; rate limits on password-reset requests, uploads (page and API together)
and API writes, each answering 429 with a clear message and Retry-After."""

from __future__ import annotations

import itertools

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts import ratelimit
from apps.accounts.forms import LOGIN_FAILED
from apps.accounts.models import AuditEvent
from tests.auth import APIClient, Client
from tests.factories import TEST_PASSWORD, UserFactory, png_bytes

LOGIN = "accounts:login"


def attempt(client, email: str, password: str, ip: str):
    return client.post(reverse(LOGIN), {"username": email, "password": password}, REMOTE_ADDR=ip)


def fail_from(addresses: int, per_address: int, email: str) -> int:
    """Wrong passwords from several addresses; every failure but the last is an ordinary one (the
    failure that reaches a limit answers the pause itself). Returns the last status."""
    total = addresses * per_address
    for n in range(total):
        a, i = divmod(n, per_address)
        response = attempt(Client(), email, f"guess-{a}-{i}", ip=f"203.0.113.{10 + a}")
        if n < total - 1:
            assert response.status_code == 200, (a, i, response.status_code)
    return response.status_code


def events(action: str) -> list[AuditEvent]:
    with scopes_disabled():
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


# --- sign-in lockout ----------------------------------------------------------------------------------


def test_guessing_spread_over_many_addresses_pauses_the_account(world, settings):
    assert settings.AXES_ACCOUNT_FAILURE_LIMIT == 20 and settings.AXES_FAILURE_LIMIT == 5
    assert fail_from(addresses=5, per_address=4, email=world.alice.email) == 429  # the 20th; no address had 5
    response = attempt(Client(), world.alice.email, TEST_PASSWORD, ip="192.0.2.200")  # right password, new address
    assert response.status_code == 429 and response["Retry-After"] == "900"
    page = response.content.decode()
    assert "Sign-in paused" in page and "15 minutes" in page and LOGIN_FAILED.replace("'", "&#x27;") in page
    # Bob is not affected.
    assert attempt(Client(), world.bob.email, TEST_PASSWORD, ip="192.0.2.200").status_code == 302


def test_fewer_failures_than_the_account_limit_do_not_pause_it(world):
    assert fail_from(addresses=4, per_address=4, email=world.alice.email) == 200  # 16
    assert attempt(Client(), world.alice.email, TEST_PASSWORD, ip="192.0.2.200").status_code == 302


def test_the_account_count_ignores_letter_case(world):
    for a in range(5):
        for i in range(4):
            attempt(Client(), world.alice.email.upper() if i % 2 else world.alice.email, "x", ip=f"203.0.113.{a}")
    assert attempt(Client(), world.alice.email, TEST_PASSWORD, ip="192.0.2.200").status_code == 429


def test_unknown_addresses_are_paused_the_same_way(db):
    fail_from(addresses=5, per_address=4, email="ghost@st-mary.example")
    response = attempt(Client(), "ghost@st-mary.example", "x", ip="192.0.2.200")
    assert response.status_code == 429 and "Sign-in paused" in response.content.decode()


def test_hospital_admin_sees_and_lifts_a_pause(client, world):
    fail_from(addresses=1, per_address=5, email=world.alice.email)
    assert attempt(Client(), world.alice.email, TEST_PASSWORD, ip="203.0.113.10").status_code == 429
    client.force_login(world.carol)
    members = client.get(reverse("studies:members", args=[world.a.slug])).content.decode()
    assert "Sign-in paused" in members and "Lift the pause" in members
    with scopes_disabled():
        membership = world.alice.memberships.get(hospital=world.a)
    response = client.post(reverse("studies:member_unlock", args=[world.a.slug, membership.pk]))
    assert response.status_code == 302
    assert attempt(Client(), world.alice.email, TEST_PASSWORD, ip="203.0.113.10").status_code == 302
    event = events("auth.unlock")[-1]
    assert event.actor == world.carol and event.hospital == world.a and event.detail["email"] == world.alice.email


def test_hospital_admin_cannot_lift_another_hospitals_member(client, world):
    with scopes_disabled():
        doras = world.dora.memberships.get(hospital=world.b)
    client.force_login(world.carol)
    assert client.post(reverse("studies:member_unlock", args=[world.a.slug, doras.pk])).status_code == 404


def test_password_reset_link_lifts_the_pause(client, world):
    from django.contrib.auth.tokens import default_token_generator
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    fail_from(addresses=1, per_address=5, email=world.alice.email)
    uid = urlsafe_base64_encode(force_bytes(world.alice.pk))
    url = reverse("accounts:password_reset_confirm", args=[uid, default_token_generator.make_token(world.alice)])
    form_url = client.get(url)["Location"]
    new = "a-brand-new-passphrase-42"
    assert client.post(form_url, {"new_password1": new, "new_password2": new}).status_code == 302
    assert attempt(Client(), world.alice.email, new, ip="203.0.113.10").status_code == 302


def test_platform_admin_unlocks_in_the_admin(world):
    root = UserFactory(email="root@imagemedix.example", is_staff=True, is_superuser=True)
    fail_from(addresses=1, per_address=5, email=world.alice.email)
    client = Client()
    client.force_login(root)
    page = client.get(reverse("admin:axes_accessattempt_changelist"))
    assert page.status_code == 200 and world.alice.email in page.content.decode()


# --- password reset -----------------------------------------------------------------------------------


def ask_reset(email: str, ip: str):
    return Client().post(reverse("accounts:password_reset"), {"email": email}, REMOTE_ADDR=ip)


@pytest.mark.parametrize("known", [True, False], ids=["account", "no-account"])
def test_password_reset_is_limited_per_address_typed(world, settings, known):
    settings.PASSWORD_RESET_RATE = "3/hour"
    email = world.alice.email if known else "nobody@st-mary.example"
    for i in range(3):
        assert ask_reset(email, ip=f"203.0.113.{i}").status_code == 302
    response = ask_reset(email, ip="203.0.113.99")
    assert response.status_code == 429 and int(response["Retry-After"]) > 0
    assert "Too many password-reset requests" in response.content.decode()
    assert len(mail.outbox) == (3 if known else 0)
    assert events("auth.password_reset_limited")


def test_password_reset_is_limited_per_client_address(world, settings):
    settings.PASSWORD_RESET_RATE = "3/hour"
    for i in range(3):
        assert ask_reset(f"person{i}@st-mary.example", ip="203.0.113.5").status_code == 302
    assert ask_reset("someone-else@st-mary.example", ip="203.0.113.5").status_code == 429
    assert ask_reset("someone-else@st-mary.example", ip="203.0.113.6").status_code == 302


# --- uploads and API writes ---------------------------------------------------------------------------


_seeds = itertools.count(1)


def upload_page(client, world):
    # A new file each time: the same file twice for a patient asks for confirmation first.
    image = SimpleUploadedFile("x.png", png_bytes(seed=next(_seeds)), content_type="image/png")
    return client.post(
        reverse("studies:upload", args=[world.a.slug]), {"patient": world.paul_record.pk, "image": image}
    )


def upload_api(client, world):
    image = SimpleUploadedFile("x.png", png_bytes(), content_type="image/png")
    return client.post(reverse("api:study-list", args=[world.a.slug]), {"patient": world.paul_record.pk, "file": image})


def test_uploads_are_limited_per_user_on_page_and_api_together(world, settings):
    settings.UPLOAD_RATE = "2/hour"
    page, api = Client(), APIClient()
    page.force_login(world.alice)
    api.force_login(world.alice)
    assert upload_page(page, world).status_code == 302
    assert upload_api(api, world).status_code == 201
    refused = upload_page(page, world)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "uploaded many images in a short time" in refused.content.decode()
    refused = upload_api(api, world)
    assert refused.status_code == 429 and "uploaded many images" in refused.json()["detail"]
    assert int(refused["Retry-After"]) > 0
    # Another doctor is not affected.
    other = Client()
    with scopes_disabled():
        from apps.studies.services import assign_doctor

        assign_doctor(world.paul_record, world.bob)
    other.force_login(world.bob)
    assert upload_page(other, world).status_code == 302


def test_api_writes_are_throttled_but_reads_are_not(world, monkeypatch):
    monkeypatch.setattr(ratelimit.WriteRateThrottle, "THROTTLE_RATES", {"api_write": "2/hour"})
    client = APIClient()
    client.force_login(world.carol)
    url = reverse("api:patient-list", args=[world.a.slug])
    for i in range(2):
        body = {"mrn": f"T-{i}", "given_name": "Tess", "family_name": "Test", "birth_date": "1990-01-01"}
        assert client.post(url, body, format="json").status_code == 201
    refused = client.post(url, {"mrn": "T-9"}, format="json")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "try again in" in refused.json()["detail"]
    for _ in range(5):
        assert client.get(url).status_code == 200


def test_rate_text_is_parsed_like_drf():
    assert ratelimit.parse_rate("5/hour") == (5, 3600)
    assert ratelimit.parse_rate("10/m") == (10, 60)
    assert ratelimit.parse_rate("1/day") == (1, 86400)
