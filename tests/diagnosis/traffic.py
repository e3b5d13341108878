"""Synthetic hospital traffic for the learning-loop tests: many AI reads (and doctors' feedback)
written straight into the database, at chosen times, without files or networks.

The rows are what ``services._store_result`` and ``services.confirm_diagnosis/correct_diagnosis``
write; the studies point at no stored file (the performance and drift code never reads one).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any

from django_scopes import scopes_disabled

from apps.diagnosis.models import Diagnosis, Feedback, FeedbackAction, ModelVersion
from apps.studies.models import Study, StudyStatus

_counter = itertools.count(1)


@dataclass
class Read:
    """One AI read to write (defaults: a confident, determinate chest read of an 8-bit PNG)."""

    label: str = "normal"
    probabilities: dict[str, float] | None = None
    refused: bool = False
    refusal_code: str = ""
    indeterminate: bool = False
    route: str = "chest_xray"
    task: str = "chest"
    source_format: str = "png"
    dicom_modality: str = ""
    bit_depth: int = 8
    width: int = 1024
    height: int = 1024
    ood: dict[str, Any] = field(default_factory=lambda: {"score": 0.4, "threshold": 1.2})
    total_ms: float = 120.0
    #: The doctor's label (None: not reviewed). Equal to ``label``: a confirmation.
    doctor_label: str | None = None


def confident(labels: list[str], label: str, confidence: float = 0.9) -> dict[str, float]:
    rest = (1.0 - confidence) / (len(labels) - 1)
    return {k: (confidence if k == label else rest) for k in labels}


def write_reads(
    patient: Any,
    uploader: Any,
    reads: list[Read],
    *,
    when: dt.datetime,
    router: ModelVersion,
    specialist: ModelVersion | None,
    doctor: Any = None,
) -> list[Diagnosis]:
    """Write ``reads`` (studies, diagnoses, feedback) of ``patient`` at ``when``."""
    with scopes_disabled():
        studies = []
        for read in reads:
            n = next(_counter)
            studies.append(
                Study(
                    hospital_id=patient.hospital_id,
                    patient=patient,
                    uploaded_by=uploader,
                    status=StudyStatus.REFUSED if read.refused else StudyStatus.DONE,
                    modality=read.route if not read.refused else "unsupported",
                    source_format=read.source_format,
                    original_filename=f"synthetic-{n}.{read.source_format}",
                    width=read.width,
                    height=read.height,
                    dicom_modality=read.dicom_modality,
                    file_name=f"synthetic/{n}",
                    file_sha256=hashlib.sha256(str(n).encode()).hexdigest(),
                    file_key_id="none",
                    file_size=1,
                )
            )
        studies = Study.objects.bulk_create(studies)
        diagnoses = []
        for study, read in zip(studies, reads, strict=True):
            has_specialist = specialist is not None and (not read.refused or read.refusal_code == "unlike_training")
            diagnoses.append(
                Diagnosis(
                    hospital_id=patient.hospital_id,
                    study=study,
                    route=read.route,
                    route_probabilities={read.route: 0.97},
                    refused=read.refused,
                    refusal_code=read.refusal_code,
                    refusal_reason="refused" if read.refused else "",
                    task="" if read.refused else read.task,
                    label="" if read.refused else read.label,
                    probabilities={} if read.refused else (read.probabilities or {read.label: 0.9}),
                    indeterminate=read.indeterminate,
                    candidates=[read.label, "other"] if read.indeterminate else [],
                    ood=read.ood,
                    bit_depth=read.bit_depth,
                    router_version=router,
                    router_sha256=router.weights_sha256,
                    specialist_version=specialist if has_specialist else None,
                    specialist_sha256=specialist.weights_sha256 if has_specialist else "",
                    versions_key=f"{router.pk}:{specialist.pk if has_specialist else '-'}",
                    timings_ms={"total": read.total_ms},
                )
            )
        diagnoses = Diagnosis.objects.bulk_create(diagnoses)
        ids = [d.pk for d in diagnoses]
        Study.objects.filter(pk__in=[s.pk for s in studies]).update(created_at=when, updated_at=when)
        Diagnosis.objects.filter(pk__in=ids).update(created_at=when)
        feedback = [
            Feedback(
                hospital_id=patient.hospital_id,
                diagnosis=d,
                doctor=doctor or uploader,
                action=FeedbackAction.CONFIRM if read.doctor_label == read.label else FeedbackAction.CORRECT,
                corrected_label="" if read.doctor_label == read.label else read.doctor_label,
            )
            for d, read in zip(diagnoses, reads, strict=True)
            if read.doctor_label is not None
        ]
        Feedback.objects.bulk_create(feedback)
        return list(Diagnosis.objects.filter(pk__in=ids).order_by("pk"))
