"""Skip locally, fail in CI: one rule for every test that needs an outside service.

On a laptop without PostgreSQL, Redis or Chromium the integration and browser tests skip and say
why. Where ``CI`` is set (``.ci/run`` exports ``CI=true``) the same absence is a failure, so a CI
run with Redis stopped goes red instead of green-with-skips.
"""

from __future__ import annotations

import os
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
