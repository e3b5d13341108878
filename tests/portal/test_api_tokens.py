"""API tokens (issue 8, finding 4): stored as digests, expire, revoked on password change,
deactivation, "Revoke all" (page and API) and per token, optionally bound to one hospital."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from apps.accounts import tokens
from apps.accounts.models import ApiToken, AuditEvent, Role
from tests.auth import APIClient
from tests.factories import TEST_PASSWORD, MembershipFactory, UserFactory

BACKEND = "django.contrib.auth.backends.ModelBackend"


def patients_url(hospital) -> str:
    return reverse("api:patient-list", kwargs={"hospital_slug": hospital.slug})


def with_token(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def works(raw: str, hospital) -> bool:
    status = with_token(raw).get(patients_url(hospital)).status_code
    assert status in (200, 401), status
    return status == 200


def audit(action: str) -> list[AuditEvent]:
    with scopes_disabled():
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


# --- storage and lifetime -----------------------------------------------------------------------------


def test_only_a_digest_is_stored(world):
    token, raw = tokens.create(world.alice)
    assert works(raw, world.a)
    with connection.cursor() as cursor:
        cursor.execute("SELECT digest, token_key FROM accounts_apitoken")
        rows = cursor.fetchall()
    assert len(rows) == 1
    digest, key = rows[0]
    assert raw not in digest and len(digest) == 128  # SHA-512 hex
    assert raw.startswith(key) and len(key) < len(raw) // 4  # the prefix that tells tokens apart


def test_token_expires_after_the_configured_lifetime(world, settings):
    before = timezone.now()
    token, raw = tokens.create(world.alice)
    assert settings.API_TOKEN_TTL_HOURS == 8
    assert before + dt.timedelta(hours=8) <= token.expiry <= timezone.now() + dt.timedelta(hours=8)
    ApiToken.objects.filter(pk=token.pk).update(expiry=timezone.now() - dt.timedelta(seconds=1))
    assert not works(raw, world.a)
    assert not ApiToken.objects.filter(pk=token.pk).exists()  # knox deletes it on the way


def test_lifetime_comes_from_the_setting(world, settings):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": dt.timedelta(hours=1)}
    token, _ = tokens.create(world.alice)
    assert token.expiry - token.created < dt.timedelta(hours=1, seconds=5)


# --- revocation -------------------------------------------------------------------------------------


def test_password_change_revokes_every_token(world):
    _, first = tokens.create(world.alice)
    _, second = tokens.create(world.alice, hospital=world.a)
    _, other = tokens.create(world.bob)
    world.alice.set_password("a-brand-new-passphrase-42")
    world.alice.save()
    assert not works(first, world.a) and not works(second, world.a)
    assert works(other, world.a)
    event = audit("api_token.revoke_all")[-1]
    assert event.detail["reason"] == "password_change" and event.detail["user"] == world.alice.pk
    assert first not in str(event.detail) and first[:15] in event.detail["tokens"]


def test_password_change_page_revokes_tokens(client, world):
    _, raw = tokens.create(world.alice)
    client.force_login(world.alice, backend=BACKEND)
    response = client.post(
        reverse("accounts:password_change"),
        {
            "old_password": TEST_PASSWORD,
            "new_password1": "a-brand-new-passphrase-42",
            "new_password2": "a-brand-new-passphrase-42",
        },
    )
    assert response.status_code == 302
    assert not works(raw, world.a)


class FastPBKDF2(PBKDF2PasswordHasher):
    iterations = 1


def test_login_rehash_keeps_tokens(world, settings):
    """Logging in re-hashes an outdated hash of the same password: that is no password change."""
    _, raw = tokens.create(world.alice)
    settings.PASSWORD_HASHERS = [f"{__name__}.FastPBKDF2", "django.contrib.auth.hashers.MD5PasswordHasher"]
    old_hash = world.alice.password
    assert world.alice.check_password(TEST_PASSWORD)
    assert world.alice.password != old_hash and world.alice.password.startswith("pbkdf2")  # re-hashed, saved
    assert works(raw, world.a)


def test_deactivation_revokes_every_token(world):
    _, raw = tokens.create(world.alice)
    world.alice.is_active = False
    world.alice.save()
    assert ApiToken.objects.filter(user=world.alice).count() == 0
    world.alice.is_active = True
    world.alice.save()
    assert not works(raw, world.a)  # switching the account back on brings no token back
    assert audit("api_token.revoke_all")[-1].detail["reason"] == "account_off"


def test_removing_the_role_revokes_the_tokens_bound_to_that_hospital(alice_in_both):
    from apps.accounts.services import deactivate_member

    w = alice_in_both
    _, bound_a = tokens.create(w.alice, hospital=w.a)
    _, bound_b = tokens.create(w.alice, hospital=w.b)
    with scopes_disabled():
        deactivate_member(w.alice.memberships.get(hospital=w.a), actor=w.carol)
    assert not ApiToken.objects.filter(hospital=w.a).exists()
    assert with_token(bound_b).get(patients_url(w.b)).status_code == 200
    assert audit("api_token.revoke")[-1].actor == w.carol


def test_api_logout_revokes_only_this_token(world):
    _, first = tokens.create(world.alice)
    _, second = tokens.create(world.alice)
    assert with_token(first).post(reverse("api-auth:logout")).status_code == 204
    assert not works(first, world.a) and works(second, world.a)
    assert audit("api_token.revoke")[-1].actor == world.alice


def test_api_logoutall_revokes_every_token_of_the_user(world):
    _, first = tokens.create(world.alice)
    _, second = tokens.create(world.alice)
    _, other = tokens.create(world.bob)
    assert with_token(first).post(reverse("api-auth:logoutall")).status_code == 204
    assert not works(first, world.a) and not works(second, world.a) and works(other, world.a)
    assert with_token(first).post(reverse("api-auth:logoutall")).status_code == 401


def test_api_logout_needs_a_token(client, world):
    client.force_login(world.alice, backend=BACKEND)  # a browser session is not a token
    assert client.post(reverse("api-auth:logout")).status_code == 401
    assert APIClient().post(reverse("api-auth:logoutall")).status_code == 401


# --- binding to one hospital ------------------------------------------------------------------------


@pytest.fixture
def alice_in_both(world):
    with scopes_disabled():
        MembershipFactory(user=world.alice, hospital=world.b, role=Role.DOCTOR)
    return world


def test_bound_token_opens_only_its_hospital(alice_in_both):
    w = alice_in_both
    _, bound = tokens.create(w.alice, hospital=w.a)
    assert with_token(bound).get(patients_url(w.a)).status_code == 200
    response = with_token(bound).get(patients_url(w.b))
    assert response.status_code == 403
    assert "bound to another hospital" in response.json()["detail"]
    _, everywhere = tokens.create(w.alice)
    assert works(everywhere, w.a) and works(everywhere, w.b)


def test_token_cannot_be_bound_where_the_user_is_no_clinician(world):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        tokens.create(world.alice, hospital=world.b)  # not her hospital
    with pytest.raises(ValidationError):
        tokens.create(world.paul)  # patients have no API


# --- the API tokens page ----------------------------------------------------------------------------


def test_page_shows_a_new_token_once(client, alice_in_both):
    w = alice_in_both
    client.force_login(w.alice, backend=BACKEND)
    response = client.post(reverse("accounts:api_tokens"), {"name": "PACS bridge", "hospital": w.b.pk})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    raw = response.context["created"]["raw"]
    assert raw in response.content.decode() and "shown only once" in response.content.decode()
    assert with_token(raw).get(patients_url(w.b)).status_code == 200
    assert with_token(raw).get(patients_url(w.a)).status_code == 403
    listing = client.get(reverse("accounts:api_tokens")).content.decode()
    assert raw not in listing and raw[:15] in listing and "PACS bridge" in listing
    event = audit("api_token.create")[-1]
    assert event.actor == w.alice and event.hospital == w.b and raw not in str(event.detail)


def test_page_refuses_a_hospital_of_someone_else(client, world):
    client.force_login(world.alice, backend=BACKEND)
    response = client.post(reverse("accounts:api_tokens"), {"hospital": world.b.pk})
    assert response.status_code == 400 and not ApiToken.objects.exists()


def test_patient_is_told_the_api_is_for_clinicians(client, world):
    client.force_login(world.paul, backend=BACKEND)
    page = client.get(reverse("accounts:api_tokens")).content.decode()
    assert "for doctors and hospital administrators" in page
    assert client.post(reverse("accounts:api_tokens"), {"name": "x"}).status_code == 400
    assert not ApiToken.objects.exists()


def test_page_revokes_one_or_all(client, world):
    first, first_raw = tokens.create(world.alice)
    _, second_raw = tokens.create(world.alice)
    bobs, bobs_raw = tokens.create(world.bob)
    client.force_login(world.alice, backend=BACKEND)
    # Someone else's token is not hers to revoke: 404, and it keeps working.
    assert client.post(reverse("accounts:api_token_revoke"), {"token": bobs.token_key}).status_code == 404
    for odd in ("", "\x00", "x" * 5000):  # no such token, never a 500
        assert client.post(reverse("accounts:api_token_revoke"), {"token": odd}).status_code == 404
    assert works(bobs_raw, world.a)
    assert client.post(reverse("accounts:api_token_revoke"), {"token": first.token_key}).status_code == 302
    assert not works(first_raw, world.a) and works(second_raw, world.a)
    response = client.post(reverse("accounts:api_tokens_revoke_all"), follow=True)
    assert "All your API tokens are revoked (1)" in response.content.decode()
    assert not works(second_raw, world.a) and works(bobs_raw, world.a)
    assert audit("api_token.revoke_all")[-1].detail["reason"] == "user_request"


def test_token_pages_need_a_login(client, db):
    for name in ("accounts:api_tokens", "accounts:api_token_revoke", "accounts:api_tokens_revoke_all"):
        response = client.post(reverse(name))
        assert response.status_code == 302 and reverse("accounts:login") in response["Location"]


def test_command_binds_to_a_hospital_and_refuses_unknown_ones(world, capsys):
    from django.core.management import CommandError, call_command

    call_command("create_api_token", world.alice.email, "--hospital", "st-mary")
    raw = capsys.readouterr().out.strip()
    assert with_token(raw).get(patients_url(world.a)).status_code == 200
    with pytest.raises(CommandError, match="No hospital"):
        call_command("create_api_token", world.alice.email, "--hospital", "nowhere")
    with pytest.raises(CommandError, match="for doctors and hospital administrators"):
        call_command("create_api_token", world.paul.email)


# --- upgrading from DRF's plain-text tokens ------------------------------------------------------


def test_upgrade_drops_the_plain_text_token_table(db, postgres_required):
    """Migration accounts.0002 on a database that still has DRF's ``authtoken_token`` (created here
    as DRF's migration made it): the table and the app's migration records are gone."""
    from importlib import import_module

    from django.db.migrations.recorder import MigrationRecorder

    migration = import_module("apps.accounts.migrations.0002_api_token")
    legacy = UserFactory(email="legacy@example.org")
    with connection.cursor() as cursor:
        cursor.execute(
            'CREATE TABLE "authtoken_token" ("key" varchar(40) PRIMARY KEY, "created" timestamptz NOT NULL, '
            '"user_id" bigint NOT NULL UNIQUE REFERENCES "accounts_user" ("id"))'
        )
        cursor.execute("INSERT INTO authtoken_token VALUES ('0123456789abcdef', now(), %s)", [legacy.pk])
    recorder = MigrationRecorder(connection)
    recorder.record_applied("authtoken", "0001_initial")
    with connection.schema_editor() as editor:
        migration.drop_plaintext_tokens(None, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    assert not recorder.migration_qs.filter(app="authtoken").exists()
