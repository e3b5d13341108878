"""Per-version performance from the doctors' feedback, summarised by a scheduled task.

``summarize_hospital`` fills ``VersionPerformance``: one row per hospital, model version, arm
(live or shadow) and week, holding counts and histograms only. It recomputes just the weeks
that changed since its last run (new reads, new feedback, new shadow results), so the hourly
beat task stays cheap. ``version_summaries`` adds weeks up for the dashboard and derives the
rates with their Wilson intervals; that is arithmetic on a few summary rows, never a scan of
the diagnoses.

What the figures mean:

* **reads**: AI reads by the version (for the router, every study it routed);
* **refused**: reads refused (router: not a chest X-ray/brain MRI, unclear or unreadable;
  specialist: its feature-space check found the image unlike its training images);
* **indeterminate**: reads that named two candidates instead of a label;
* **reviewed**: reads a doctor confirmed or corrected (the latest feedback counts);
* **agreement**: of the reviewed reads that named a label, the share whose label the doctor kept;
* **confusion**: AI label (or "indeterminate") against the doctor's label;
* **calibration**: per confidence bin, reads, mean confidence and the share the doctor kept;
* **latency**: total milliseconds of the read (decode, both stages, heat map), as a histogram.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.accounts.tenancy import tenant_scope

from .models import (
    Diagnosis,
    Feedback,
    FeedbackAction,
    ModelVersion,
    PerformanceArm,
    RefusalCode,
    ShadowResult,
    Task,
    VersionPerformance,
)
from .stats import histogram, histogram_quantile, wilson_interval

#: Latency bins (milliseconds) of ``VersionPerformance.latency_histogram``.
LATENCY_EDGES_MS: tuple[float, ...] = (0, 50, 100, 200, 400, 800, 1600, 3200, 6400, math.inf)
#: Confidence bins of ``VersionPerformance.calibration``: [0, 0.1), … [0.9, 1.0].
CALIBRATION_BINS = 10
INDETERMINATE = "indeterminate"
ROUTER_REFUSALS = frozenset({RefusalCode.OTHER_MODALITY, RefusalCode.UNCLEAR_ROUTE, RefusalCode.UNREADABLE})


def week_of(moment: dt.datetime) -> dt.date:
    """The Monday (UTC) of the week ``moment`` falls in."""
    day = moment.astimezone(dt.UTC).date()
    return day - dt.timedelta(days=day.weekday())


def week_bounds(week: dt.date) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(week, dt.time.min, tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=7)


def total_ms(timings: dict[str, Any] | None) -> float | None:
    """A read's latency: its ``total`` timing, else the sum of its stages."""
    timings = timings or {}
    if isinstance(timings.get("total"), int | float):
        return float(timings["total"])
    values = [float(v) for v in timings.values() if isinstance(v, int | float)]
    return sum(values) if values else None


def top_probability(probabilities: dict[str, Any] | None, label: str) -> float | None:
    value = (probabilities or {}).get(label)
    return float(value) if isinstance(value, int | float) else None


@dataclass
class _Tally:
    """The counts of one (version, arm) in one week while they are being added up."""

    reads: int = 0
    refused: int = 0
    indeterminate: int = 0
    reviewed: int = 0
    reviewed_determinate: int = 0
    agreed: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    calibration: list[list[float]] = field(default_factory=lambda: [[0, 0.0, 0] for _ in range(CALIBRATION_BINS)])
    latencies: list[float] = field(default_factory=list)
    paired: dict[str, int] = field(default_factory=dict)

    def add_read(self, *, refused: bool, latency: float | None) -> None:
        self.reads += 1
        self.refused += int(refused)
        if latency is not None:
            self.latencies.append(latency)

    def add_label(self, *, label: str, indeterminate: bool, confidence: float | None, doctor_label: str | None) -> None:
        """A read that got to a specialist result (``label`` is its top class)."""
        self.indeterminate += int(indeterminate)
        if doctor_label is None:
            return
        self.reviewed += 1
        self.confusion[INDETERMINATE if indeterminate else label][doctor_label] += 1
        if indeterminate:
            return
        kept = doctor_label == label
        self.reviewed_determinate += 1
        self.agreed += int(kept)
        if confidence is not None:
            row = self.calibration[min(int(confidence * CALIBRATION_BINS), CALIBRATION_BINS - 1)]
            row[0] += 1
            row[1] += confidence
            row[2] += int(kept)

    def row(self, hospital_id: int, version_id: int, arm: str, week: dt.date, now: dt.datetime) -> VersionPerformance:
        return VersionPerformance(
            hospital_id=hospital_id,
            model_version_id=version_id,
            arm=arm,
            week=week,
            reads=self.reads,
            refused=self.refused,
            indeterminate=self.indeterminate,
            reviewed=self.reviewed,
            reviewed_determinate=self.reviewed_determinate,
            agreed=self.agreed,
            confusion={ai: dict(doctors) for ai, doctors in self.confusion.items()},
            calibration=[[int(n), round(s, 6), int(k)] for n, s, k in self.calibration],
            latency_histogram=histogram(self.latencies, LATENCY_EDGES_MS),
            paired=dict(self.paired),
            computed_at=now,
        )


def doctor_labels(hospital_id: int, diagnosis_ids: Iterable[int]) -> dict[int, str]:
    """The label the doctor stands behind, per diagnosis, from its latest feedback."""
    ids = list(diagnosis_ids)
    labels: dict[int, str] = {}
    rows = (
        Feedback.objects.filter(hospital_id=hospital_id, diagnosis_id__in=ids)
        .order_by("diagnosis_id", "-created_at", "-pk")
        .values_list("diagnosis_id", "action", "corrected_label", "diagnosis__label")
    )
    for diagnosis_id, action, corrected, ai_label in rows:
        if diagnosis_id not in labels:
            labels[diagnosis_id] = corrected if action == FeedbackAction.CORRECT else ai_label
    return labels


def compute_week(hospital_id: int, week: dt.date, now: dt.datetime) -> list[VersionPerformance]:
    """The summary rows of one hospital's week (call inside its tenant scope)."""
    start, end = week_bounds(week)
    reads = list(
        Diagnosis.objects.filter(hospital_id=hospital_id, created_at__gte=start, created_at__lt=end).values(
            "pk",
            "router_version_id",
            "specialist_version_id",
            "refused",
            "refusal_code",
            "label",
            "indeterminate",
            "probabilities",
            "timings_ms",
        )
    )
    doctors = doctor_labels(hospital_id, [r["pk"] for r in reads])
    tallies: dict[tuple[int, str], _Tally] = defaultdict(_Tally)
    for read in reads:
        latency = total_ms(read["timings_ms"])
        router_refused = read["refused"] and read["refusal_code"] in ROUTER_REFUSALS
        tallies[(read["router_version_id"], PerformanceArm.LIVE)].add_read(refused=router_refused, latency=latency)
        if read["specialist_version_id"] is None:
            continue
        tally = tallies[(read["specialist_version_id"], PerformanceArm.LIVE)]
        tally.add_read(refused=read["refused"], latency=latency)
        if not read["refused"]:
            tally.add_label(
                label=read["label"],
                indeterminate=read["indeterminate"],
                confidence=top_probability(read["probabilities"], read["label"]),
                doctor_label=doctors.get(read["pk"]),
            )
    _add_shadow(hospital_id, start, end, doctors, tallies)
    return [tally.row(hospital_id, version_id, arm, week, now) for (version_id, arm), tally in tallies.items()]


def _add_shadow(
    hospital_id: int,
    start: dt.datetime,
    end: dt.datetime,
    doctors: dict[int, str],
    tallies: dict[tuple[int, str], _Tally],
) -> None:
    """Shadow results of the live reads of the week, and how they pair with the live read on the
    studies a doctor labelled."""
    shadows = ShadowResult.objects.filter(
        hospital_id=hospital_id, diagnosis__created_at__gte=start, diagnosis__created_at__lt=end
    ).values(
        "diagnosis_id",
        "model_version_id",
        "refused",
        "label",
        "indeterminate",
        "probabilities",
        "timings_ms",
        "diagnosis__label",
        "diagnosis__refused",
        "diagnosis__indeterminate",
    )
    for shadow in shadows:
        tally = tallies[(shadow["model_version_id"], PerformanceArm.SHADOW)]
        tally.add_read(refused=shadow["refused"], latency=total_ms(shadow["timings_ms"]))
        doctor = doctors.get(shadow["diagnosis_id"])
        if shadow["refused"]:
            continue
        tally.add_label(
            label=shadow["label"],
            indeterminate=shadow["indeterminate"],
            confidence=top_probability(shadow["probabilities"], shadow["label"]),
            doctor_label=doctor,
        )
        if doctor is None:
            continue
        shadow_right = not shadow["indeterminate"] and shadow["label"] == doctor
        live_right = (not shadow["diagnosis__refused"] and not shadow["diagnosis__indeterminate"]) and shadow[
            "diagnosis__label"
        ] == doctor
        key = {(True, True): "both", (True, False): "shadow_only", (False, True): "live_only"}.get(
            (shadow_right, live_right), "neither"
        )
        tally.paired[key] = tally.paired.get(key, 0) + 1


def _weeks(queryset: Any, field_name: str) -> set[dt.date]:
    return {week_of(moment) for moment in queryset.datetimes(field_name, "day", tzinfo=dt.UTC)}


def changed_weeks(hospital_id: int, since: dt.datetime | None) -> set[dt.date]:
    """Weeks (by read day) whose figures may have changed since ``since`` (all weeks when None)."""
    reads = Diagnosis.objects.filter(hospital_id=hospital_id)
    if since is None:
        return _weeks(reads, "created_at")
    feedback = Diagnosis.objects.filter(hospital_id=hospital_id, feedback__created_at__gte=since)
    shadowed = Diagnosis.objects.filter(hospital_id=hospital_id, shadow_results__created_at__gte=since)
    return (
        _weeks(reads.filter(created_at__gte=since), "created_at")
        | _weeks(feedback, "created_at")
        | _weeks(shadowed, "created_at")
    )


def summarize_hospital(hospital_id: int) -> list[dt.date]:
    """Recompute the summary rows of every week of ``hospital_id`` that changed since the last
    run. Returns the weeks recomputed. Idempotent; concurrent runs of one hospital only repeat
    work (each week is replaced in one transaction)."""
    with tenant_scope(hospital_id):
        now = timezone.now()
        since = VersionPerformance.objects.filter(hospital_id=hospital_id).aggregate(last=Max("computed_at"))["last"]
        weeks = sorted(changed_weeks(hospital_id, since))
        for week in weeks:
            rows = compute_week(hospital_id, week, now)
            with transaction.atomic():
                VersionPerformance.objects.filter(hospital_id=hospital_id, week=week).delete()
                VersionPerformance.objects.bulk_create(rows)
        if not weeks and since is not None:
            # Nothing changed: move the mark forward so the next run looks back from here.
            VersionPerformance.objects.filter(hospital_id=hospital_id, computed_at=since).update(computed_at=now)
    return weeks


# --- Reading the summary ------------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """A proportion with its 95% Wilson interval (all None without data)."""

    successes: int
    n: int

    @property
    def value(self) -> float | None:
        return self.successes / self.n if self.n else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.successes, self.n)

    @property
    def low(self) -> float | None:
        return self.interval[0] if self.interval else None

    @property
    def high(self) -> float | None:
        return self.interval[1] if self.interval else None


@dataclass
class VersionSummary:
    """A version's figures in one hospital over a period (weeks added up)."""

    model_version: ModelVersion
    arm: str
    weeks: list[VersionPerformance]
    reads: int = 0
    refused: int = 0
    indeterminate: int = 0
    reviewed: int = 0
    reviewed_determinate: int = 0
    agreed: int = 0
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    calibration: list[list[float]] = field(default_factory=list)
    latency_histogram: list[int] = field(default_factory=list)
    paired: dict[str, int] = field(default_factory=dict)

    @classmethod
    def add_up(cls, model_version: ModelVersion, arm: str, weeks: list[VersionPerformance]) -> VersionSummary:
        summary = cls(
            model_version=model_version,
            arm=arm,
            weeks=sorted(weeks, key=lambda w: w.week),
            calibration=[[0, 0.0, 0] for _ in range(CALIBRATION_BINS)],
            latency_histogram=[0] * (len(LATENCY_EDGES_MS) - 1),
        )
        confusion: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for week in weeks:
            for name in ("reads", "refused", "indeterminate", "reviewed", "reviewed_determinate", "agreed"):
                setattr(summary, name, getattr(summary, name) + getattr(week, name))
            for ai, doctors in week.confusion.items():
                for doctor, n in doctors.items():
                    confusion[ai][doctor] += int(n)
            for index, (n, total, kept) in enumerate(week.calibration or []):
                row = summary.calibration[index]
                row[0], row[1], row[2] = row[0] + n, row[1] + total, row[2] + kept
            for index, n in enumerate(week.latency_histogram or []):
                summary.latency_histogram[index] += int(n)
            for key, n in week.paired.items():
                summary.paired[key] = summary.paired.get(key, 0) + int(n)
        summary.confusion = {ai: dict(doctors) for ai, doctors in confusion.items()}
        return summary

    @property
    def is_router(self) -> bool:
        return self.model_version.task == Task.ROUTER

    @property
    def reviewed_share(self) -> Rate:
        return Rate(self.reviewed, self.reads - self.refused)

    @property
    def agreement(self) -> Rate:
        return Rate(self.agreed, self.reviewed_determinate)

    @property
    def refusal_rate(self) -> Rate:
        return Rate(self.refused, self.reads)

    @property
    def indeterminate_rate(self) -> Rate:
        return Rate(self.indeterminate, self.reads - self.refused)

    @property
    def latency_p50(self) -> float | None:
        return histogram_quantile(self.latency_histogram, LATENCY_EDGES_MS, 0.5)

    @property
    def latency_p95(self) -> float | None:
        return histogram_quantile(self.latency_histogram, LATENCY_EDGES_MS, 0.95)

    @property
    def paired_total(self) -> int:
        return sum(self.paired.values())


def version_summaries(hospital_id: int, since: dt.date | None = None) -> list[VersionSummary]:
    """Every version with summary rows in ``hospital_id`` (weeks from ``since`` on), added up;
    call inside the hospital's tenant scope."""
    rows = VersionPerformance.objects.filter(hospital_id=hospital_id).select_related("model_version")
    if since is not None:
        rows = rows.filter(week__gte=since)
    grouped: dict[tuple[int, str], list[VersionPerformance]] = defaultdict(list)
    versions: dict[int, ModelVersion] = {}
    for row in rows:
        grouped[(row.model_version_id, row.arm)].append(row)
        versions[row.model_version_id] = row.model_version
    summaries = [VersionSummary.add_up(versions[vid], arm, weeks) for (vid, arm), weeks in grouped.items()]
    order: dict[str, int] = {Task.ROUTER: 0, Task.CHEST: 1, Task.BRAIN: 2}
    return sorted(summaries, key=lambda s: (order.get(s.model_version.task, 9), s.arm != PerformanceArm.LIVE, -s.reads))
