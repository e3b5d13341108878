"""Skip locally, fail in CI: one rule for every test that needs an outside service.

On a laptop without PostgreSQL, Redis or Chromium the integration and browser tests skip and say
why. Where ``CI`` is set (``.ci/run`` exports ``CI=true``) the same absence is a failure, so a CI
run with Redis stopped goes red instead of green-with-skips.

``CHROMIUM`` names the browser binary the browser tests drive (default: ``chromium`` on the PATH,
else ``/usr/bin/chromium``); point it at a missing file to see the CI failure.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """True where the ``CI`` environment variable is set to anything but empty/``0``/``false``."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no"}


def unavailable(reason: str) -> NoReturn:
    """A service the test needs is missing: skip with ``reason`` locally, fail with it in CI."""
    if in_ci():
        pytest.fail(f"{reason} (required because CI is set)", pytrace=False)
    pytest.skip(reason)


CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def require_chromium() -> None:
    """The browser tests' Chromium must exist: skip locally, fail in CI."""
    if not os.path.exists(CHROMIUM):
        unavailable(f"browser test: no Chromium at {CHROMIUM} (apt-get install chromium, or set CHROMIUM)")
