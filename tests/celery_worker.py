"""A real ``celery worker`` process for integration tests, and the broker it listens on.

Shared by the diagnosis and report integration tests (and the browser test's database URL): the
worker runs in its own process against the *test* database pytest-django created, a Redis
database of its own (flushed before and after), and the test's media folder and encryption key.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlparse, urlunparse

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


@contextmanager
def dedicated_broker(redis_url: str, db: int) -> Iterator[str]:
    """Point this process's Celery app (not eager) at Redis database ``db``, flushed before and after."""
    import redis

    from imagemedix.celery import app

    url = urlunparse(urlparse(redis_url)._replace(path=f"/{db}"))
    redis.Redis.from_url(url).flushdb()
    saved = {key: app.conf[key] for key in ("broker_url", "task_always_eager")}

    def reset_pools() -> None:
        app._pool = None
        if "amqp" in app.__dict__:
            app.amqp._producer_pool = None

    app.conf.broker_url = url
    app.conf.task_always_eager = False
    reset_pools()
    try:
        yield url
    finally:
        for key, value in saved.items():
            app.conf[key] = value
        reset_pools()
        redis.Redis.from_url(url).flushdb()


@contextmanager
def celery_worker(
    name: str, broker_url: str, key_id: str, key_b64: str, tmp_path: Path, **extra_env: str
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """Start ``celery worker`` (solo pool) sharing the test's database, media folder and key;
    yields the process and its log file, and stops it afterwards."""
    log_path = tmp_path / "worker.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "imagemedix.settings",
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": broker_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "STORAGE_BACKEND": "local",
        "MEDIA_ROOT": str(django_settings.MEDIA_ROOT),
        "FILE_ENCRYPTION_KEYS": f"{key_id}:{key_b64}",
        "IMAGEMEDIX_VAR_DIR": str(tmp_path / "var"),
        "PYTHONUNBUFFERED": "1",
        **extra_env,
    }
    command = [
        str(Path(sys.executable).with_name("celery")), "-A", "imagemedix", "worker", "--pool=solo",
        "--concurrency=1", "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
        "-n", f"{name}-{os.getpid()}@%h",
    ]  # fmt: skip
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
