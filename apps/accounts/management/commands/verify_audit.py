"""``manage.py verify_audit``: walk the audit trail's hash chain and report the first broken link.

Exit status 0 when the chain is intact (it prints how many events and the newest event's hash:
keep that line somewhere outside the database, and pass it back as ``--anchor`` later to prove
the chain was not rewritten since); 1 with the first broken link otherwise. Run it daily.
"""

from __future__ import annotations

import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts import auditchain

ANCHOR = re.compile(r"^(\d+):([0-9a-f]{64})$")


def parse_anchor(value: str) -> tuple[int, str]:
    match = ANCHOR.match(value.strip().lower())
    if match is None:
        raise CommandError("--anchor must look like EVENT_ID:SHA256, as printed by an earlier run.")
    return int(match.group(1)), match.group(2)


class Command(BaseCommand):
    help = "Check the audit trail's hash chain; exit status 1 and the first broken link if it was tampered with."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--anchor",
            metavar="EVENT_ID:SHA256",
            help="A head printed by an earlier run: the chain must still hold that event with that hash.",
        )

    def handle(self, *args: Any, anchor: str | None = None, **options: Any) -> None:
        verdict = auditchain.verify(parse_anchor(anchor) if anchor else None)
        if not verdict.ok:
            raise CommandError(
                f"Audit chain BROKEN after {verdict.events} intact events. {verdict.problem}", returncode=1
            )
        head = f"{verdict.last_event_id}:{verdict.last_hash}" if verdict.last_event_id is not None else "none"
        self.stdout.write(f"Audit chain intact: {verdict.events} events. Head (for --anchor): {head}")
