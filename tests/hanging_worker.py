"""The Celery app of a worker whose AI reads hang once they have started (tests only).

``celery -A tests.hanging_worker worker`` is the ordinary ImageMedix worker, except that every
read stops after it has leased its study (status ``processing``) and before it reads the image,
until the process is killed. The recovery tests kill it there, mid-read, with SIGKILL.
"""

from __future__ import annotations

import time
from typing import Any

from celery.signals import task_prerun

from imagemedix.celery import app

__all__ = ["app"]


@task_prerun.connect
def hang_reads(sender: Any = None, **kwargs: Any) -> None:
    from apps.diagnosis import services  # Django is set up once a task runs

    def hang(name: str, sha256: str) -> bytes:
        print("hanging-worker: read started, hanging", flush=True)
        while True:
            time.sleep(1)

    services.read_encrypted = hang
