"""Shared fixtures: the named personas of every test, and test-only settings.

Personas (hospital A = "st-mary", hospital B = "riverside"):
* ``alice``  — doctor in A, assigned to patient Paul
* ``bob``    — doctor in A, assigned to nobody
* ``carol``  — hospital admin of A
* ``paul``   — patient user in A, linked to the Patient record ``world.paul_record``
* ``dora``   — doctor in B, assigned to B's patient ``world.bea_record``
"""

from __future__ import annotations

import os
import socket
import uuid
from types import SimpleNamespace
from urllib.parse import urlparse

import pytest
from django_scopes import scopes_disabled

from apps.accounts.models import Role
from apps.studies import services as study_services

from .auth import Client
from .availability import unavailable
from .factories import HospitalFactory, MembershipFactory, PatientFactory, UserFactory


@pytest.fixture(autouse=True)
def _test_settings(settings, tmp_path):
    """Fast password hashing, a private media folder and cache key prefix per test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    settings.MEDIA_ROOT = tmp_path / "media"
    # Every test counts its rate limits (and anything else cached) afresh: a key prefix of its own,
    # on the run's real cache (Redis when REDIS_URL is set), never a flush of a shared database.
    settings.CACHES = {
        name: {**config, "KEY_PREFIX": f"test-{uuid.uuid4().hex[:12]}"} for name, config in settings.CACHES.items()
    }
    yield


@pytest.fixture
def client():
    """pytest-django's ``client``, whose ``force_login`` also completes the second factor where the
    policy asks for one (tests/auth.py)."""
    return Client()


@pytest.fixture
def eager_celery():
    """Run Celery tasks inline, as the embedded default does (REDIS_URL in the test env would
    otherwise send them to Redis)."""
    from imagemedix.celery import app

    old = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = old


@pytest.fixture
def media_files(settings):
    """All files currently in the test media folder (to prove nothing was left behind)."""

    def _list():
        root = settings.MEDIA_ROOT
        if not os.path.exists(root):
            return []
        return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)

    return _list


@pytest.fixture
def world(db):
    """Two hospitals and the personas above."""
    with scopes_disabled():
        a = HospitalFactory(name="St Mary's Hospital", slug="st-mary")
        b = HospitalFactory(name="Riverside Clinic", slug="riverside")
        alice = UserFactory(email="alice@st-mary.example", full_name="Dr Alice Adams")
        bob = UserFactory(email="bob@st-mary.example", full_name="Dr Bob Brown")
        carol = UserFactory(email="carol@st-mary.example", full_name="Carol Clark")
        paul = UserFactory(email="paul@patient.example", full_name="Paul Potter")
        dora = UserFactory(email="dora@riverside.example", full_name="Dr Dora Diaz")
        MembershipFactory(user=alice, hospital=a, role=Role.DOCTOR)
        MembershipFactory(user=bob, hospital=a, role=Role.DOCTOR)
        MembershipFactory(user=carol, hospital=a, role=Role.HOSPITAL_ADMIN)
        MembershipFactory(user=paul, hospital=a, role=Role.PATIENT)
        MembershipFactory(user=dora, hospital=b, role=Role.DOCTOR)
        paul_record = PatientFactory(hospital=a, mrn="A-0001", given_name="Paul", family_name="Potter", user=paul)
        other_a = PatientFactory(hospital=a, mrn="A-0002", given_name="Olga", family_name="Owens")
        bea_record = PatientFactory(hospital=b, mrn="B-0001", given_name="Bea", family_name="Baker")
        study_services.assign_doctor(paul_record, alice, actor=carol)
        study_services.assign_doctor(bea_record, dora)
    return SimpleNamespace(
        a=a,
        b=b,
        alice=alice,
        bob=bob,
        carol=carol,
        paul=paul,
        dora=dora,
        paul_record=paul_record,
        other_a=other_a,
        bea_record=bea_record,
    )


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis for integration tests; skips (with the reason) when REDIS_URL is unset or
    Redis does not answer, and fails instead where CI is set."""
    url = os.environ.get("REDIS_URL", "")
    if not url:
        unavailable("integration test: set REDIS_URL to a running Redis (make test does when one is up)")
    if not _reachable(url, 6379):
        unavailable(f"integration test: Redis at REDIS_URL={url} does not answer")
    return url


@pytest.fixture(scope="session")
def postgres_required() -> None:
    """Integration tests run on PostgreSQL only; skips elsewhere, fails where CI is set."""
    from django.db import connection

    if connection.vendor != "postgresql":
        unavailable("integration test: set DATABASE_URL to PostgreSQL (make test does when one is up)")
