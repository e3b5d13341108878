"""A real ``celery worker`` process for integration tests, and the broker it listens on.

Shared by the diagnosis and report integration tests (and the browser test's database URL): the
worker runs in its own process against the *test* database pytest-django created, a queue of its
own on the test Redis (named after this run's random id, so another run or a developer's worker on
the same Redis never takes its tasks), and the test's media folder and encryption key.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from django.conf import settings as django_settings
from django.db import connection


def test_database_url() -> str:
    """DATABASE_URL of the *test* database pytest-django created (test_<name>)."""
    s = connection.settings_dict
    auth = quote(s["USER"] or "", safe="")
    if s.get("PASSWORD"):
        auth += ":" + quote(s["PASSWORD"], safe="")
    host = s.get("HOST") or "127.0.0.1"
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}@{host}{port}/{s['NAME']}"


test_database_url.__test__ = False  # a helper, not a test, despite its name


#: One random id per test run: the prefix of every queue and channels key prefix the run uses.
RUN_ID = uuid.uuid4().hex[:12]


def run_name(purpose: str) -> str:
    """A queue name or key prefix that belongs to this test run only, e.g. ``itest-3f9a…-reports``."""
    return f"itest-{RUN_ID}-{purpose}"


@dataclass(frozen=True)
class Broker:
    """Where a test's tasks go: the Redis URL and this run's queue on it."""

    url: str
    queue: str


@contextmanager
def dedicated_broker(redis_url: str, purpose: str, *, clear: bool = True) -> Iterator[Broker]:
    """Point this process's Celery app (not eager) at ``redis_url`` with this run's own queue
    (``CELERY_QUEUE``); the queue is deleted before and after (``clear``; not for a broker that
    is down on purpose)."""
    import redis

    from imagemedix.celery import app

    broker = Broker(url=redis_url, queue=run_name(purpose))
    client = redis.Redis.from_url(redis_url)
    if clear:
        client.delete(broker.queue)
    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager", "task_default_queue")}

    def reset_broker_state() -> None:
        # Connection pools and the queue/routing tables (built from task_default_queue) are
        # cached on first use; drop them so the next send uses the settings above.
        app._pool = None
        app.__dict__.pop("amqp", None)

    app.conf.broker_url = broker.url
    app.conf.task_always_eager = False
    app.conf.task_default_queue = broker.queue
    reset_broker_state()
    try:
        yield broker
    finally:
        for key, value in saved.items():
            app.conf[key] = value
        reset_broker_state()
        if clear:
            client.delete(broker.queue)


@contextmanager
def celery_worker(
    name: str,
    broker: Broker,
    key_id: str,
    key_b64: str,
    tmp_path: Path,
    *,
    beat: bool = False,
    app: str = "imagemedix",
    **extra_env: str,
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """Start ``celery worker`` (solo pool) on ``broker``'s queue only, sharing the test's database,
    media folder and key; yields the process and its log file, and stops it afterwards. ``beat``
    embeds the beat scheduler (``-B``); ``app`` is the Celery app module (``-A``)."""
    log_path = tmp_path / f"{name}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagemedix.settings",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": broker.url,
        "CELERY_QUEUE": broker.queue,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "STORAGE_BACKEND": "local",
        "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "FILE_ENCRYPTION_KEYS": f"{key_id}:{key_b64}",
        "IMAGEMEDIX_VAR_DIR": str(tmp_path / "var"),
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    command = [
        str(Path(sys.executable).with_name("celery")), "-A", app, "worker", "--pool=solo",
        "-Q", broker.queue, "--concurrency=1", "--loglevel=INFO", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "-n", f"{name}-{RUN_ID}@%h",
    ]  # fmt: skip
    if beat:
        command += ["-B", "-s", str(tmp_path / f"{name}-beat-schedule")]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=django_settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
