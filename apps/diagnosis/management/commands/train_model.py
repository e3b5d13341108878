"""``manage.py train_model {router,chest,brain} --data DIR``: train a model and register it.

``--extra-data EXPORT`` adds the doctors' labelled cases that ``manage.py export_feedback EXPORT``
wrote (its ``train/`` split for this specialist) to the training images; validation stays carved
from ``--data`` and the export's held-out ``test/`` split is left for ``evaluate_model``.

A thin wrapper around the pipeline's training library (``apps.diagnosis.pipeline.training``,
no Django), which writes a versioned artifact (weights + model card). The new version is
registered inactive, so it can be compared first (``rollout_percent`` in the admin), unless
``--activate`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.diagnosis.models import ROUTE_FOR_SPECIALIST
from apps.diagnosis.registry import register_artifact


def parse_value(text: str) -> Any:
    """``--set key=value`` values: JSON when it parses (numbers, booleans, lists), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


class Command(BaseCommand):
    help = "Train the router or a specialist on an ImageFolder dataset and register the artifact."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("task", choices=["router", "chest", "brain"])
        parser.add_argument("--data", type=Path, required=True, help="ImageFolder dataset (train/ and test/ inside).")
        parser.add_argument(
            "--extra-data",
            type=Path,
            dest="extra_data",
            help="An export_feedback folder: its train/ cases for this specialist are trained on as well.",
        )
        parser.add_argument("--out", type=Path, help="Where to write the artifact (default MODEL_WEIGHTS_DIR/<task>).")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--img-size", type=int, dest="img_size")
        parser.add_argument("--batch-size", type=int, dest="batch_size")
        parser.add_argument("--lr", type=float)
        parser.add_argument("--seed", type=int)
        parser.add_argument(
            "--preprocessing",
            choices=["none", "clahe", "zscore"],
            help="Intensity preprocessing of the specialist's input (benchmarks/preprocessing.py compares them).",
        )
        parser.add_argument("--threads", type=int, help="torch threads (default TORCH_NUM_THREADS).")
        parser.add_argument(
            "--model-version", dest="version", help="Version name of the artifact (default: chosen by the trainer)."
        )
        parser.add_argument(
            "--set", action="append", default=[], metavar="KEY=VALUE", help="Any other training option; repeatable."
        )
        parser.add_argument("--activate", action="store_true", help="Make the new version the active one.")
        parser.add_argument("--no-register", action="store_true", help="Only write the artifact.")

    def handle(self, *args: Any, **opts: Any) -> None:
        data: Path = opts["data"]
        if not data.is_dir():
            raise CommandError(f"{data} is not a folder.")
        task: str = opts["task"]
        out: Path = opts["out"] or Path(settings.MODEL_WEIGHTS_DIR) / task
        config: dict[str, Any] = {
            key: opts[key]
            for key in ("epochs", "img_size", "batch_size", "lr", "seed", "version", "preprocessing")
            if opts.get(key) is not None
        }
        config["threads"] = opts["threads"] or settings.TORCH_NUM_THREADS
        if opts["extra_data"] is not None:
            config["extra_data"] = self._extra_data(task, opts["extra_data"])
        for item in opts["set"]:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise CommandError(f"--set expects KEY=VALUE, not {item!r}.")
            config[key.strip().replace("-", "_")] = parse_value(value)

        from apps.diagnosis.pipeline import training

        self.stdout.write(f"Training {task} on {data} → {out} with {config}")
        try:
            artifact_dir = Path(training.train(task, data, out, **config))
        except (TypeError, ValueError) as exc:  # an option or a value the trainer does not accept
            raise CommandError(f"Training not started: {exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"Wrote {artifact_dir}"))
        card_path = artifact_dir / "card.json"
        if card_path.exists():
            card = json.loads(card_path.read_text())
            metrics = card.get("test_metrics") or card.get("metrics") or {}
            if isinstance(metrics, dict) and isinstance(metrics.get("test"), dict):
                metrics = metrics["test"]
            summary = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
            if summary:
                self.stdout.write("Test metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in summary.items()))
        if opts["no_register"]:
            return
        mv, created = register_artifact(artifact_dir, activate=opts["activate"])
        state = "active" if mv.is_active else "inactive (activate it in the admin or with --activate)"
        self.stdout.write(f"{'Registered' if created else 'Already registered'}: {mv.task} {mv.version}, {state}")

    def _extra_data(self, task: str, export: Path) -> str:
        """The export's folder for ``task`` (``EXPORT/chest_xray`` …), which must hold a train/ split."""
        if task not in ROUTE_FOR_SPECIALIST:
            raise CommandError("--extra-data adds doctors' labelled cases to a specialist (chest or brain).")
        folder = export / ROUTE_FOR_SPECIALIST[task]
        if not (folder / "train").is_dir():
            raise CommandError(f"{folder / 'train'} does not exist: is {export} a folder written by export_feedback?")
        return str(folder)
