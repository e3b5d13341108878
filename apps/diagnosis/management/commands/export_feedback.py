"""``manage.py export_feedback DIR``: the doctors' corrections as a retraining dataset.

Writes ``DIR/<task>/<label>/<study-id>.png`` (the decoded image, 8-bit greyscale at its
original size) in the ImageFolder layout ``manage.py train_model`` reads, and
``DIR/manifest.csv`` describing every file. The label is the doctor's: the corrected label,
or with ``--include-confirmed`` also the AI label a doctor confirmed (``action`` column says
which). Each study appears once, with its latest feedback. Platform command: it reads every
hospital and writes one audit event per hospital it exported from.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandParser
from django_scopes import scopes_disabled
from PIL import Image

from apps.accounts import audit
from apps.accounts.models import Hospital
from apps.diagnosis.models import Feedback, FeedbackAction
from apps.studies.storage import TamperedFileError, read_encrypted

#: Labels become folder names: only plain class names (as in the model cards) are written.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

MANIFEST_FIELDS = [
    "path",
    "task",
    "label",
    "ai_label",
    "action",
    "hospital",
    "study_id",
    "diagnosis_id",
    "feedback_id",
    "doctor_id",
    "specialist_version",
    "specialist_sha256",
    "source_format",
    "file_sha256",
    "feedback_at",
]


def to_greyscale_png(data: bytes) -> bytes:
    """Decode an upload (PNG/JPEG/DICOM) the way the pipeline does and encode it as 8-bit PNG."""
    from apps.diagnosis.pipeline.decode import decode_image

    pixels = np.asarray(decode_image(data).pixels, dtype=np.float32)
    out = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype("uint8"), "L").save(out, format="PNG")
    return out.getvalue()


class Command(BaseCommand):
    help = "Export doctor-corrected AI reads as an ImageFolder tree (DIR/<task>/<label>/<study>.png)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out_dir", type=Path, help="Folder to write into (created if missing).")
        parser.add_argument(
            "--include-confirmed", action="store_true", help="Also export cases whose AI label a doctor confirmed."
        )
        parser.add_argument("--task", choices=["chest", "brain"], help="Only this specialist's cases.")

    def handle(self, *args: Any, out_dir: Path, include_confirmed: bool, task: str | None, **options: Any) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        actions = [FeedbackAction.CORRECT] + ([FeedbackAction.CONFIRM] if include_confirmed else [])
        written, skipped = 0, 0
        per_hospital: dict[int, int] = {}
        with scopes_disabled():
            feedback = (
                Feedback.objects.select_related("diagnosis__study", "diagnosis__specialist_version", "hospital")
                .filter(diagnosis__refused=False)
                .order_by("diagnosis__study_id", "-created_at", "-pk")
            )
            if task:
                feedback = feedback.filter(diagnosis__task=task)
            rows = []
            seen: set[int] = set()
            for fb in feedback:
                study = fb.diagnosis.study
                if study.pk in seen:  # only the latest feedback of each study counts
                    continue
                seen.add(study.pk)
                if fb.action not in actions or not fb.diagnosis.task:
                    continue
                label = fb.final_label
                if not SAFE_NAME.match(label) or not SAFE_NAME.match(fb.diagnosis.task):
                    self.stderr.write(f"Skipped study {study.pk}: label {label!r} is not a plain class name.")
                    skipped += 1
                    continue
                try:
                    png = to_greyscale_png(read_encrypted(study.file_name, study.file_sha256))
                except (TamperedFileError, OSError, ValueError) as exc:
                    self.stderr.write(f"Skipped study {study.pk}: {exc}")
                    skipped += 1
                    continue
                rel = Path(fb.diagnosis.task) / label / f"{study.pk}.png"
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (out_dir / rel).write_bytes(png)
                spec = fb.diagnosis.specialist_version
                rows.append(
                    {
                        "path": rel.as_posix(),
                        "task": fb.diagnosis.task,
                        "label": label,
                        "ai_label": fb.diagnosis.label,
                        "action": fb.action,
                        "hospital": fb.hospital.slug,
                        "study_id": study.pk,
                        "diagnosis_id": fb.diagnosis_id,
                        "feedback_id": fb.pk,
                        "doctor_id": fb.doctor_id,
                        "specialist_version": spec.version if spec else "",
                        "specialist_sha256": fb.diagnosis.specialist_sha256,
                        "source_format": study.source_format,
                        "file_sha256": study.file_sha256,
                        "feedback_at": fb.created_at.isoformat(),
                    }
                )
                per_hospital[fb.hospital_id] = per_hospital.get(fb.hospital_id, 0) + 1
                written += 1
            with open(out_dir / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=MANIFEST_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
            for hospital in Hospital.objects.filter(pk__in=per_hospital):
                audit.record(
                    "diagnosis.export_feedback",
                    hospital=hospital,
                    count=per_hospital[hospital.pk],
                    destination=str(out_dir),
                )
        self.stdout.write(f"Exported {written} case(s) to {out_dir}" + (f"; skipped {skipped}." if skipped else "."))
