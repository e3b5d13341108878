"""A CI run with a service gone goes red: where ``CI`` is set, a test that needs Redis fails (with
a message naming Redis) instead of skipping; locally the same absence is a skip with the reason."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .availability import unavailable

ROOT = Path(__file__).resolve().parents[1]
# One test whose only outside service is Redis (the real channels-redis layer); the database is
# the embedded SQLite, so the child never touches this run's PostgreSQL test database.
NEEDS_REDIS = "tests/chat/test_idle_socket.py::test_layer_reads_wait_longer_than_its_blocking_pop"


def _dead_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ci_run_with_redis_unreachable_fails_and_names_redis(tmp_path):
    dead = f"redis://127.0.0.1:{_dead_port()}/5"
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "PYTEST_ADDOPTS"}}
    env.update(CI="true", REDIS_URL=dead)
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", NEEDS_REDIS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert f"Redis at REDIS_URL={dead} does not answer (required because CI is set)" in out
    assert "1 error" in out and "skipped" not in out


def test_unavailable_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Redis"):
        unavailable("no Redis")
    for value in ("true", "1", "yes"):
        monkeypatch.setenv("CI", value)
        with pytest.raises(pytest.fail.Exception, match=r"no Redis \(required because CI is set\)"):
            unavailable("no Redis")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        unavailable("no Redis")
