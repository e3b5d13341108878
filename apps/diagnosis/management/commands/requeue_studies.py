"""``manage.py requeue_studies``: send again the AI reads that got stuck.

A study stays ``uploaded``/``queued``/``processing`` when the broker was down at upload time
or a worker died mid-read (acks_late normally redelivers, but not after the broker lost the
message). Run it from cron every few minutes; reads are idempotent, so requeueing a study that
was in fact still running does not read it twice.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from apps.diagnosis.watchdog import requeue_stuck_studies


class Command(BaseCommand):
    help = "Re-send studies stuck in uploaded/queued/processing for longer than N minutes."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--minutes", type=int, default=15, help="How long a study must be stuck (default 15).")
        parser.add_argument("--dry-run", action="store_true", help="Only list the studies that would be requeued.")

    def handle(self, *args: Any, minutes: int, dry_run: bool, **options: Any) -> None:
        ids = requeue_stuck_studies(dt.timedelta(minutes=max(0, minutes)), dry_run=dry_run)
        verb = "Would requeue" if dry_run else "Requeued"
        self.stdout.write(f"{verb} {len(ids)} stud{'y' if len(ids) == 1 else 'ies'}" + (f": {ids}" if ids else "."))
