"""Links in e-mails are absolute: on PUBLIC_BASE_URL when it is set (whoever sends the mail, with or
without a request), else on the request's own address, and `check --deploy` warns when a
production deployment leaves it unset (mail sent outside a request would carry a bare path)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core import mail
from django.test import RequestFactory
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.checks import public_base_url_check
from apps.accounts.models import Role
from apps.accounts.services import invite
from apps.diagnosis import drift
from apps.diagnosis.models import DriftAlert
from imagemedix.links import absolute_url

BASE = "https://imaging.example.org"
ROOT = Path(__file__).resolve().parents[1]


def test_absolute_url_prefers_the_public_address_then_the_request(settings):
    request = RequestFactory().get("/", HTTP_HOST="localhost:8000")
    settings.PUBLIC_BASE_URL = BASE
    assert absolute_url("/h/st-mary/models/", request) == f"{BASE}/h/st-mary/models/"
    assert absolute_url("/h/st-mary/models/") == f"{BASE}/h/st-mary/models/"
    settings.PUBLIC_BASE_URL = ""
    assert absolute_url("/h/st-mary/models/", request) == "http://localhost:8000/h/st-mary/models/"
    assert absolute_url("/h/st-mary/models/") == "/h/st-mary/models/"
    for not_a_path in ("https://elsewhere.example/x", "//elsewhere.example/x", "h/st-mary/"):
        with pytest.raises(ValueError, match="a path inside the portal"):
            absolute_url(not_a_path)


def test_an_invitation_sent_without_a_request_links_to_the_public_address(
    settings, client, world, django_capture_on_commit_callbacks
):
    settings.PUBLIC_BASE_URL = BASE
    with scopes_disabled(), django_capture_on_commit_callbacks(execute=True):
        invite(world.a, email="newdoc@st-mary.example", role=Role.DOCTOR, actor=None)
    [message] = mail.outbox
    link = re.search(r"https?://\S+/invitations/\S+/", message.body)
    assert link and link.group(0).startswith(f"{BASE}/invitations/"), message.body
    path = link.group(0).removeprefix(BASE)
    assert client.get(path).status_code == 200  # the link works


def test_an_invitation_from_the_page_uses_the_public_address_not_the_requests(
    settings, client, world, django_capture_on_commit_callbacks
):
    settings.PUBLIC_BASE_URL = BASE
    client.force_login(world.carol)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("studies:members", args=[world.a.slug]), {"email": "x@st-mary.example", "role": "doctor"})
    [message] = mail.outbox
    assert f"{BASE}/invitations/" in message.body and "testserver" not in message.body


@pytest.mark.parametrize(("public", "expected"), [(BASE, BASE), ("", "")])
def test_the_drift_alert_email_links_to_the_models_page(
    settings, world, django_capture_on_commit_callbacks, public, expected
):
    """The alert is raised in a worker (no request): the e-mail's link is absolute exactly when
    PUBLIC_BASE_URL says where the portal is."""
    settings.PUBLIC_BASE_URL = public
    with scopes_disabled():
        alert = DriftAlert.objects.create(
            hospital=world.a, task="router", signal="refusal_rate", value=0.3, threshold=0.1, message="Refusals rose."
        )
        with django_capture_on_commit_callbacks(execute=True):
            drift._notify_admins(alert)
    [message] = mail.outbox
    path = reverse("diagnosis:models", args=[world.a.slug]) + f"#alert-{alert.pk}"
    assert f"models page: {expected}{path}\n" in message.body


def test_check_deploy_warns_when_production_has_no_public_address(settings):
    settings.DEBUG, settings.PUBLIC_BASE_URL = False, ""
    [warning] = public_base_url_check(None)
    assert warning.id == "imagemedix.W001" and "PUBLIC_BASE_URL" in warning.msg
    settings.PUBLIC_BASE_URL = BASE
    assert public_base_url_check(None) == []
    settings.DEBUG, settings.PUBLIC_BASE_URL = True, ""
    assert public_base_url_check(None) == []


def test_a_public_address_with_a_path_is_refused_at_start_with_a_clear_message():
    env = {**os.environ, "PUBLIC_BASE_URL": "https://imaging.example.org/portal"}
    run = subprocess.run(
        [sys.executable, "-c", "import imagemedix.settings"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 1
    assert "ImproperlyConfigured: PUBLIC_BASE_URL must be the portal's scheme and host" in run.stderr
    assert "'https://imaging.example.org/portal'" in run.stderr
