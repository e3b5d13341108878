"""``manage.py export_feedback DIR``: the doctors' labelled cases as a training-ready dataset.

Writes the layout of ``shared/datasets`` that ``manage.py train_model`` reads::

    DIR/chest_xray/{train,test}/<label>/<hospital>-<study id>.png
    DIR/brain_mri/{train,test}/<label>/<hospital>-<study id>.png
    DIR/manifest.csv   split,dataset,label,file,sha256_of_png, then where each case came from

Each image is the decoded upload, 8-bit greyscale at its original size. The label is the
doctor's: the corrected label, or with ``--include-confirmed`` also the AI label a doctor
confirmed (``action`` says which). Each study appears once, with its latest feedback. A
patient's cases all go to one split: ``test/`` holds about ``--test-percent`` of the patients
(chosen by a hash of the hospital and patient ids, so a patient stays on the same side in every
export); ``train_model --extra-data DIR`` trains on ``train/`` only, and ``evaluate_model
--compare-active`` measures on ``test/``. Platform command (``--hospital`` limits it to one
hospital); one audit event per hospital exported from.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_scopes import scopes_disabled
from PIL import Image

from apps.accounts import audit
from apps.accounts.models import Hospital
from apps.diagnosis.models import ROUTE_FOR_SPECIALIST, Feedback, FeedbackAction
from apps.studies.storage import TamperedFileError, read_encrypted

#: Labels become folder names: only plain class names (as in the model cards) are written.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

MANIFEST_FIELDS = [
    "split",
    "dataset",
    "label",
    "file",
    "sha256_of_png",
    "task",
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


def held_out(hospital_id: int, patient_id: int, test_percent: int) -> bool:
    """Whether the patient's cases go to ``test/``: a stable hash, the same in every export."""
    digest = hashlib.sha256(f"feedback-split:{hospital_id}:{patient_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < test_percent


class Command(BaseCommand):
    help = "Export doctor-labelled AI reads as a training-ready dataset (DIR/<dataset>/{train,test}/<label>/*.png)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out_dir", type=Path, help="Folder to write into (created if missing).")
        parser.add_argument(
            "--include-confirmed", action="store_true", help="Also export cases whose AI label a doctor confirmed."
        )
        parser.add_argument("--task", choices=["chest", "brain"], help="Only this specialist's cases.")
        parser.add_argument("--hospital", metavar="SLUG", help="Only this hospital's cases.")
        parser.add_argument(
            "--test-percent",
            type=int,
            default=20,
            help="Share of patients held out in test/ for evaluate_model (0-90, default 20).",
        )

    def handle(
        self,
        *args: Any,
        out_dir: Path,
        include_confirmed: bool,
        task: str | None,
        hospital: str | None,
        test_percent: int,
        **options: Any,
    ) -> None:
        if not 0 <= test_percent <= 90:
            raise CommandError("--test-percent must be between 0 and 90.")
        only = None
        if hospital:
            only = Hospital.objects.filter(slug=hospital).first()
            if only is None:
                raise CommandError(f"No hospital with the slug {hospital!r}.")
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
            if only is not None:
                feedback = feedback.filter(hospital=only)
            rows = []
            seen: set[int] = set()
            for fb in feedback:
                study = fb.diagnosis.study
                if study.pk in seen:  # only the latest feedback of each study counts
                    continue
                seen.add(study.pk)
                if fb.action not in actions or fb.diagnosis.task not in ROUTE_FOR_SPECIALIST:
                    continue
                label = fb.final_label
                if not SAFE_NAME.match(label):
                    self.stderr.write(f"Skipped study {study.pk}: label {label!r} is not a plain class name.")
                    skipped += 1
                    continue
                try:
                    png = to_greyscale_png(read_encrypted(study.file_name, study.file_sha256))
                except (TamperedFileError, OSError, ValueError) as exc:
                    self.stderr.write(f"Skipped study {study.pk}: {exc}")
                    skipped += 1
                    continue
                dataset = ROUTE_FOR_SPECIALIST[fb.diagnosis.task]
                split = "test" if held_out(fb.hospital_id, study.patient_id, test_percent) else "train"
                rel = Path(dataset) / split / label / f"{fb.hospital.slug}-{study.pk}.png"
                (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
                (out_dir / rel).write_bytes(png)
                spec = fb.diagnosis.specialist_version
                rows.append(
                    {
                        "split": split,
                        "dataset": dataset,
                        "label": label,
                        "file": rel.as_posix(),
                        "sha256_of_png": hashlib.sha256(png).hexdigest(),
                        "task": fb.diagnosis.task,
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
            for exported_from in Hospital.objects.filter(pk__in=per_hospital):
                audit.record(
                    "diagnosis.export_feedback",
                    hospital=exported_from,
                    count=per_hospital[exported_from.pk],
                    destination=str(out_dir),
                )
        self.stdout.write(f"Exported {written} case(s) to {out_dir}" + (f"; skipped {skipped}." if skipped else "."))
