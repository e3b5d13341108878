"""Synthetic hospital traffic for the learning-loop tests: many AI reads (and doctors' feedback)
written straight into the database, at chosen times, without files or networks; and the
ordinary days of a hospital (``Traffic``) that the drift tests shift.

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

from apps.diagnosis import drift
from apps.diagnosis.models import Diagnosis, Feedback, FeedbackAction, ModelVersion
from apps.diagnosis.stats import histogram
from apps.studies.models import Study, StudyStatus

from .helpers import BRAIN_LABELS, CHEST_LABELS, fake_version

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


# --- A hospital's ordinary days (the drift tests) ---------------------------------------------

START = dt.datetime(2026, 9, 7, 9, 0, tzinfo=dt.UTC)  # a Monday
CONFIDENCES = [0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.92, 0.88, 0.97, 0.83]
#: Labels in the proportions of the cards' training priors (chest 26/48/26%, brain 28/26/15/31%).
CHEST_MIX = ["normal"] * 8 + ["bacterial_pneumonia"] * 15 + ["viral_pneumonia"] * 8
BRAIN_MIX = ["glioma"] * 9 + ["meningioma"] * 8 + ["no_tumor"] * 5 + ["pituitary"] * 10
FLIPPED_CHEST_MIX = ["normal"] * 2 + ["bacterial_pneumonia"] * 4 + ["viral_pneumonia"] * 25


def _card(labels: list[str], weights: list[float]) -> dict:
    """A card like training writes: class weights (the prior), test accuracy and reliability
    bins matching the ordinary traffic below."""
    counts = histogram(CONFIDENCES * 10, drift.CONFIDENCE_EDGES)
    bins = [{"lo": i / 15, "hi": (i + 1) / 15, "count": c} for i, c in enumerate(counts) if c]
    return {
        "training": {"class_weights": weights},
        "test_metrics": {"accuracy": 0.84, "reliability": bins},
    }


def drift_registry() -> dict[str, ModelVersion]:
    """Active router, chest and brain versions whose cards match the ordinary traffic."""
    with scopes_disabled():
        ModelVersion.objects.all().delete()
        return {
            "router": fake_version(
                "router", "r1", is_active=True, card={"extra_test_metrics": {"real_cases_wrongly_refused": 0.01}}
            ),
            "chest": fake_version(
                "chest",
                "c1",
                is_active=True,
                metrics={"accuracy": 0.84},
                card=_card(CHEST_LABELS, [1.292, 0.69, 1.289]),
            ),
            "brain": fake_version(
                "brain",
                "b1",
                is_active=True,
                metrics={"accuracy": 0.84},
                card=_card(BRAIN_LABELS, [0.882, 0.951, 1.727, 0.809]),
            ),
        }


class Traffic:
    """A day of a hospital's reads: 14 chest X-rays (8-bit PNG, 1500 px), 10 brain MRIs (16-bit
    DICOM "MR", 512 px), a photo refused every other day; doctors review every other read and correct one
    reviewed read in six."""

    def __init__(self, world, versions, start: dt.datetime = START):
        self.world, self.versions, self.start = world, versions, start
        self.chest_labels = itertools.cycle(CHEST_MIX)
        self.brain_labels = itertools.cycle(BRAIN_MIX)
        self.confidences = itertools.cycle(CONFIDENCES)
        self.review = itertools.cycle(
            [None, "keep", None, "keep", None, "keep", None, "keep", None, "keep", None, "fix"]
        )

    def _read(self, labels, all_labels, **fields) -> Read:
        label = next(labels)
        verdict = next(self.review)
        doctor = None if verdict is None else label if verdict == "keep" else next(x for x in all_labels if x != label)
        fields.setdefault("probabilities", confident(all_labels, label, next(self.confidences)))
        return Read(label=label, doctor_label=doctor, **fields)

    def chest(self, n: int = 14, labels=None, **fields) -> list[Read]:
        labels = labels or self.chest_labels
        fields = {"width": 1500, "height": 1200, "bit_depth": 8, "source_format": "png", **fields}
        return [self._read(labels, CHEST_LABELS, **fields) for _ in range(n)]

    def brain(self, n: int = 10) -> list[Read]:
        fields = {"route": "brain_mri", "task": "brain", "width": 512, "height": 512, "bit_depth": 16}
        fields.update(source_format="dicom", dicom_modality="MR")
        return [self._read(self.brain_labels, BRAIN_LABELS, **fields) for _ in range(n)]

    def write(self, day: int, chest: list[Read], brain: list[Read], other: list[Read]) -> None:
        when = self.start + dt.timedelta(days=day)
        w, v = self.world, self.versions
        for reads, specialist in ((chest, v["chest"]), (brain, v["brain"]), (other, None)):
            if reads:
                write_reads(w.paul_record, w.alice, reads, when=when, router=v["router"], specialist=specialist)

    def ordinary_day(self, day: int) -> None:
        photo = [Read(refused=True, refusal_code="other_modality", route="unsupported", width=800, height=600)]
        self.write(day, self.chest(), self.brain(), photo if day % 2 else [])


def lung_ct_week(traffic: Traffic) -> None:
    """Days 35-41: the brain MRIs are lung CT slices (16-bit DICOM "CT"); the router refuses them."""
    for day in range(35, 42):
        ct = [
            Read(refused=True, refusal_code="other_modality", route="unsupported", width=512, height=512,
                 bit_depth=16, source_format="dicom", dicom_modality="CT")
            for _ in range(10)
        ]  # fmt: skip
        traffic.write(day, traffic.chest(), [], ct)
