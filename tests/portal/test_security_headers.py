"""Content-Security-Policy and Permissions-Policy on every page (the browser test,
tests/browser/test_csp.py, proves the pages still work under them)."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

BACKEND = "django.contrib.auth.backends.ModelBackend"


def _directives(header: str) -> dict[str, list[str]]:
    parts = (part.strip().split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in parts}


@pytest.mark.parametrize("secure", [False, True])
def test_pages_carry_a_strict_policy_that_lets_the_own_websocket_through(client, world, secure):
    client.force_login(world.alice, backend=BACKEND)
    response = client.get(reverse("studies:caseload", args=[world.a.slug]), secure=secure)
    assert response.status_code == 200
    csp = _directives(response["Content-Security-Policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no other host
    assert csp["style-src-elem"] == ["'self'"]
    assert csp["img-src"] == ["'self'", "data:", "blob:"]
    assert csp["connect-src"] == ["'self'", "wss://testserver" if secure else "ws://testserver"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]


def test_the_login_page_and_the_api_docs_have_it_too(client, world):
    assert "script-src 'self'" in client.get(reverse("accounts:login"))["Content-Security-Policy"]
    client.force_login(world.alice, backend=BACKEND)
    docs = client.get(reverse("api-docs"))
    assert docs.status_code == 200
    assert "<script>" not in docs.content.decode() and "<style>" not in docs.content.decode()
    assert "script-src 'self'" in docs["Content-Security-Policy"]


def test_powerful_features_are_switched_off(client):
    policy = client.get(reverse("accounts:login"))["Permissions-Policy"]
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert f"{feature}=()" in policy
    assert "fullscreen=(self)" in policy


def test_no_template_has_inline_script_or_event_handler():
    """The policy forbids them, so a template that has one is a page that breaks."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "templates"
    inline_script = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
    handler = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)
    offenders = []
    for path in root.rglob("*.html"):
        if path.name == "pdf.html":
            continue  # rendered to PDF by WeasyPrint, never served to a browser
        text = path.read_text()
        if inline_script.search(text) or handler.search(text) or "javascript:" in text:
            offenders.append(str(path.relative_to(root)))
    assert offenders == []
