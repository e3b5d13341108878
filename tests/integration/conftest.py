"""Fixtures of the PACS integration tests: the hospitals' integration credentials and a way to
send STOW-RS requests with them through the Django test client."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django_scopes import scopes_disabled

from apps.integration.credentials import create_credential

from .helpers import stow_body


@pytest.fixture
def pacs(world) -> SimpleNamespace:
    """An integration credential for each hospital, created by its admin (carol for St Mary's)."""
    with scopes_disabled():
        a = create_credential(world.a, name="Orthanc, radiology", actor=world.carol)
        b = create_credential(world.b, name="Riverside PACS", actor=None)
    return SimpleNamespace(a=a, b=b)


def bearer(issued: Any) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {issued.token}"}


@pytest.fixture
def stow(client, world):
    """POST a STOW-RS body to a hospital's /studies as a credential (``auth``: extra headers)."""

    def send(parts, *, auth: dict[str, str], hospital=None, content_type: str | None = None, body: bytes | None = None):
        built, built_type = stow_body(parts) if parts is not None else (b"", "")
        url = f"/dicomweb/h/{(hospital or world.a).slug}/studies"
        return client.generic(
            "POST", url, body if body is not None else built, content_type=content_type or built_type, **auth
        )

    return send
