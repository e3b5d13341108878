"""``manage.py sync_models``: register the artifacts under MODEL_WEIGHTS_DIR (this also runs
after every ``migrate``), list the registry, and optionally activate a version."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.diagnosis.models import ModelVersion
from apps.diagnosis.registry import activate_version, sync_shipped_models


class Command(BaseCommand):
    help = "Register shipped model artifacts and show the model registry."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--activate", nargs=2, metavar=("TASK", "VERSION"), help="Make this version active.")

    def handle(self, *args: Any, activate: list[str] | None, **options: Any) -> None:
        for mv in sync_shipped_models():
            self.stdout.write(f"Registered {mv.task} {mv.version} ({mv.short_sha})")
        if activate:
            chosen = ModelVersion.objects.filter(task=activate[0], version=activate[1]).first()
            if chosen is None:
                raise CommandError(f"No model version {activate[0]} {activate[1]} is registered.")
            activate_version(chosen)
        for mv in ModelVersion.objects.order_by("task", "-created_at"):
            flag = "active" if mv.is_active else (f"rollout {mv.rollout_percent}%" if mv.rollout_percent else "")
            acc = f"acc {mv.accuracy:.3f}" if mv.accuracy is not None else ""
            self.stdout.write(f"{mv.task:7} {mv.version:24} {mv.short_sha}  {acc:10} {flag}")
