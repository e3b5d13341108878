"""``manage.py export_deidentified --hospital SLUG --out DIR --by EMAIL``: the hospital's
labelled studies without direct identifiers, for research (apps/diagnosis/research_export.py).

Hospital admins only: ``--by`` names the active hospital admin who asks for the export; they are
the actor of its audit event, which lists every study exported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.accounts.models import Hospital, User
from apps.accounts.tenancy import tenant_scope
from apps.diagnosis import research_export
from apps.studies.access import active_admin_ids


class Command(BaseCommand):
    help = "Export a hospital's doctor-labelled studies de-identified (DICOM PS3.15 Basic Profile) for research."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hospital", required=True, metavar="SLUG")
        parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="An empty or new folder.")
        parser.add_argument("--by", required=True, metavar="EMAIL", help="The hospital admin asking for the export.")

    def handle(self, *args: Any, hospital: str, out: Path, by: str, **options: Any) -> None:
        found = Hospital.objects.filter(slug=hospital, is_active=True).first()
        if found is None:
            raise CommandError(f"No active hospital with the slug {hospital!r}.")
        admin = User.objects.filter(pk__in=active_admin_ids(found), email__iexact=by).first()
        if admin is None:
            raise CommandError(f"{by} is not an active hospital admin of {found.name}: only they may export its data.")
        if out.exists() and any(out.iterdir()):
            raise CommandError(f"{out} is not empty: export into a new folder.")
        with tenant_scope(found):
            summary = research_export.export(found, out, admin)
        self.stdout.write(
            f"Exported {summary.studies} studies of {summary.patients} patients to {out}; "
            f"{summary.flagged} flagged for possible burned-in text (check them before release)."
        )
