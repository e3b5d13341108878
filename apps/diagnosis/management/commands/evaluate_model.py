"""``manage.py evaluate_model ARTIFACT_DIR --data DIR``: recompute an artifact's metrics on any
ImageFolder folder (for example a dataset's ``test/`` split or an ``export_feedback`` tree).

With ``--compare-active`` it reads the held-out cases of ``DIR`` (an ``export_feedback`` dataset
folder such as ``EXPORT/chest_xray``: its ``test/`` split) with the artifact *and* with the version
that reads the studies now (the platform's active one, or ``--hospital``'s), through the
production pipeline, and prints both side by side with the paired comparison
(``apps/diagnosis/comparison.py``): whether a retrain helps the hospital's own patients before it
is put in shadow."""

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
        parser.add_argument(
            "--compare-active",
            action="store_true",
            help="Compare with the version that reads the studies now, case by case, on DIR's held-out cases.",
        )
        parser.add_argument(
            "--hospital", metavar="SLUG", help="With --compare-active: this hospital's live version (its own A/B)."
        )

    def handle(
        self,
        *args: Any,
        artifact_dir: Path,
        data: Path,
        json_out: Path | None,
        compare_active: bool,
        hospital: str | None,
        **options: Any,
    ) -> None:
        if not (artifact_dir / "model.safetensors").is_file():
            raise CommandError(f"{artifact_dir} has no model.safetensors.")
        if not data.is_dir():
            raise CommandError(f"{data} is not a folder.")
        if hospital and not compare_active:
            raise CommandError("--hospital goes with --compare-active.")
        if compare_active:
            metrics = self._compare(artifact_dir, data, hospital)
        else:
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

    def _compare(self, artifact_dir: Path, data: Path, slug: str | None) -> dict[str, Any]:
        from apps.accounts.models import Hospital
        from apps.accounts.tenancy import tenant_scope
        from apps.diagnosis import comparison, deployments
        from apps.diagnosis.pipeline import load_artifact

        live = None
        if slug:
            hospital = Hospital.objects.filter(slug=slug).first()
            if hospital is None:
                raise CommandError(f"No hospital with the slug {slug!r}.")
            with tenant_scope(hospital):
                live = deployments.live_version(hospital, load_artifact(artifact_dir, lazy=True).task)
        try:
            result = comparison.compare(artifact_dir, data, live)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        candidate, current = result["candidate"], result["live"]

        def share(value: float | None) -> str:
            return "—" if value is None else f"{value:.1%}"

        self.stdout.write(f"{result['cases']} held-out cases ({result['task']}) in {result['data']}")
        self.stdout.write(f"{'':28} {'candidate':>14} {'live':>14}")
        self.stdout.write(f"{'version':28} {candidate['version']:>14} {current['version']:>14}")
        for key, title in (
            ("right_share", "names the doctor's label"),
            ("committed_share", "names a label"),
            ("accuracy_when_committed", "right when it names one"),
        ):
            self.stdout.write(f"{title:28} {share(candidate[key]):>14} {share(current[key]):>14}")
        for key in ("indeterminate", "refused"):
            self.stdout.write(f"{key:28} {candidate[key]:>14} {current[key]:>14}")
        paired = result["paired"]
        self.stdout.write(
            f"case by case: both right {paired['both']}, only the candidate {paired['candidate_only']}, "
            f"only the live version {paired['live_only']}, neither {paired['neither']}"
        )
        p = result["mcnemar_exact_p"]
        self.stdout.write("McNemar exact p: " + ("— (no case where they differ)" if p is None else f"{p:.4f}"))
        return result
