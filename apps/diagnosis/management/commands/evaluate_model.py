"""``manage.py evaluate_model ARTIFACT_DIR --data DIR``: recompute an artifact's metrics on any
ImageFolder folder (for example a dataset's ``test/`` split or an ``export_feedback`` tree)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Evaluate a model artifact on an ImageFolder directory and print its metrics."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("artifact_dir", type=Path, help="Folder with model.safetensors and card.json.")
        parser.add_argument("--data", type=Path, required=True, help="ImageFolder directory (<label>/<image>).")
        parser.add_argument("--json", type=Path, dest="json_out", help="Also write the metrics to this JSON file.")

    def handle(self, *args: Any, artifact_dir: Path, data: Path, json_out: Path | None, **options: Any) -> None:
        if not (artifact_dir / "model.safetensors").is_file():
            raise CommandError(f"{artifact_dir} has no model.safetensors.")
        if not data.is_dir():
            raise CommandError(f"{data} is not a folder.")
        from apps.diagnosis.pipeline import training

        metrics = training.evaluate(artifact_dir, data)
        for key, value in metrics.items():
            if isinstance(value, int | float):
                self.stdout.write(f"{key:28} {value:.4f}" if isinstance(value, float) else f"{key:28} {value}")
        for key in ("per_class", "confusion_matrix"):
            if key in metrics:
                self.stdout.write(f"{key}: {json.dumps(metrics[key])}")
        if json_out:
            json_out.write_text(json.dumps(metrics, indent=2, default=str))
            self.stdout.write(f"Wrote {json_out}")
