"""Password hashing that scales: OWASP Argon2id parameters, old hashes upgraded on login, and a
per-process cap on concurrent hash computations."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.hashers import Argon2PasswordHasher, get_hasher, identify_hasher, make_password
from django.urls import reverse

from imagemedix.hashers import BoundedArgon2PasswordHasher, hash_slots
from tests.factories import TEST_PASSWORD

PRODUCTION_HASHERS = [
    "imagemedix.hashers.BoundedArgon2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
]


@pytest.fixture
def production_hashers(settings):
    """The hashers of imagemedix/settings.py (the suite otherwise uses fast MD5)."""
    settings.PASSWORD_HASHERS = PRODUCTION_HASHERS


def test_settings_list_the_bounded_argon2_hasher_first():
    from imagemedix import settings as project_settings

    assert project_settings.PASSWORD_HASHERS == PRODUCTION_HASHERS


def test_new_hashes_use_the_owasp_parameters(production_hashers):
    encoded = make_password(TEST_PASSWORD)
    assert encoded.startswith("argon2$argon2id$")
    params = get_hasher("default").decode(encoded)["params"]
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19456, 2, 1)


def test_old_parameter_hash_is_upgraded_on_a_successful_login(production_hashers, client, world):
    old = make_password(TEST_PASSWORD, hasher=Argon2PasswordHasher())  # Django's 100 MiB, p=8
    assert Argon2PasswordHasher().decode(old)["params"].memory_cost == 102400
    world.alice.password = old
    world.alice.save(update_fields=["password"])

    response = client.post(reverse("accounts:login"), {"username": world.alice.email, "password": TEST_PASSWORD})

    assert response.status_code == 302 and int(client.session["_auth_user_id"]) == world.alice.pk
    world.alice.refresh_from_db()
    assert world.alice.password != old
    assert isinstance(identify_hasher(world.alice.password), BoundedArgon2PasswordHasher)
    params = BoundedArgon2PasswordHasher().decode(world.alice.password)["params"]
    assert (params.memory_cost, params.time_cost, params.parallelism) == (19456, 2, 1)
    assert world.alice.check_password(TEST_PASSWORD)


def test_failed_login_leaves_the_old_hash_alone(production_hashers, client, world):
    old = make_password(TEST_PASSWORD, hasher=Argon2PasswordHasher())
    world.alice.password = old
    world.alice.save(update_fields=["password"])
    client.post(reverse("accounts:login"), {"username": world.alice.email, "password": "wrong-password-1"})
    world.alice.refresh_from_db()
    assert world.alice.password == old


def test_a_hash_waits_while_every_slot_is_taken(settings):
    settings.PASSWORD_HASH_CONCURRENCY = 2
    hash_slots.cache_clear()
    try:
        slots = hash_slots()
        hasher = BoundedArgon2PasswordHasher()
        encoded = hasher.encode(TEST_PASSWORD, hasher.salt())  # a free slot: runs at once
        assert slots.acquire(timeout=1) and slots.acquire(timeout=1)  # a burst holds both slots
        finished = threading.Event()
        results: list[bool] = []

        def login() -> None:
            results.append(hasher.verify(TEST_PASSWORD, encoded))
            finished.set()

        thread = threading.Thread(target=login)
        thread.start()
        assert not finished.wait(timeout=1.0), "a hash ran although every slot was taken"
        slots.release()
        assert finished.wait(timeout=10), "the queued hash did not run once a slot was free"
        thread.join()
        slots.release()
        assert results == [True]
    finally:
        hash_slots.cache_clear()
