"""Drift monitoring: is what a hospital sends, and what the AI answers, still like what the model
was trained and validated on?

The daily task ``diagnosis.check_drift`` runs ``check_hospital`` for every hospital. Each signal
compares the seven days before the run (the **window**) with a **reference**: the model card
(its training class mix, its test-set confidence distribution, its error rate) or the
hospital's own first four weeks of use (``REFERENCE_DAYS``, once they are over and hold at least
``MIN_REFERENCE`` reads). A signal with fewer than ``MIN_WINDOW`` reads in the window (or no
reference) is stored without a value and never alerts.

Signals (``THRESHOLDS``; docs/LEARNING_LOOP.md has the table):

* chest and brain, on the live version's reads: ``class_mix`` (total-variation distance of the
  AI labels from the card's training prior, with a chi-square test), ``confidence`` (PSI of the
  top-class probability), ``disagreement`` (share of reviewed reads the doctor corrected, above
  the reference), ``ood_rate`` (share of images the feature-space check found unlike training);
* every read (task "router"): ``refusal_rate`` (above the reference), ``image_size`` (PSI of
  the longer side), ``bit_depth`` and ``modality_tags`` (total-variation distances).

PSI above 0.25 is the conventional "significant shift"; distances are effect sizes, so a large
hospital's tiny, harmless differences do not alarm (the chi-square test only guards the class
mix against small-sample noise); rates use the Wilson lower bound, so a few unlucky days on a
small sample do not alarm either.

A crossed threshold opens a ``DriftAlert``: the hospital admins get a notification and an
e-mail, and the dashboard shows it until one of them acknowledges it (an audit event). The same
signal alerts again only after it has come back under its threshold.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Min
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from apps.accounts import audit
from apps.accounts.models import Hospital, User
from apps.chat.notifications import NotificationKind, notify
from apps.studies.access import active_admin_ids
from imagemedix.links import absolute_url

from .deployments import live_version
from .models import (
    SPECIALIST_TASKS,
    Diagnosis,
    DriftAlert,
    DriftCheck,
    DriftSignal,
    ModelVersion,
    RefusalCode,
    Task,
)
from .performance import doctor_labels
from .stats import chi_square_p, histogram, population_stability_index, total_variation, wilson_interval

log = logging.getLogger(__name__)

WINDOW_DAYS = 7
REFERENCE_DAYS = 28
MIN_WINDOW = 30
MIN_REFERENCE = 50
#: Each signal's threshold (what ``DriftCheck.value`` is compared with).
THRESHOLDS: dict[str, float] = {
    DriftSignal.CLASS_MIX: 0.25,
    DriftSignal.CONFIDENCE: 0.25,
    DriftSignal.DISAGREEMENT: 0.10,
    DriftSignal.OOD_RATE: 0.05,
    DriftSignal.REFUSAL_RATE: 0.10,
    DriftSignal.IMAGE_SIZE: 0.25,
    DriftSignal.BIT_DEPTH: 0.20,
    DriftSignal.MODALITY_TAGS: 0.20,
}
#: The class mix alerts only when the chi-square test also rejects the training prior at this level.
CLASS_MIX_P_VALUE = 0.001
CONFIDENCE_EDGES = [i / 15 for i in range(16)]
SIZE_EDGES = [0, 256, 512, 1024, 2048, 4096, float("inf")]
NO_TAG = "none (PNG/JPEG)"
#: What each task's signals are about, in the alerts and the charts.
SCOPE: dict[str, str] = {Task.ROUTER: "all studies", Task.CHEST: "chest X-rays", Task.BRAIN: "brain MRIs"}
INPUT_SIGNALS = (DriftSignal.REFUSAL_RATE, DriftSignal.IMAGE_SIZE, DriftSignal.BIT_DEPTH, DriftSignal.MODALITY_TAGS)
MODEL_SIGNALS = (DriftSignal.CLASS_MIX, DriftSignal.CONFIDENCE, DriftSignal.DISAGREEMENT, DriftSignal.OOD_RATE)

_READ_FIELDS = (
    "pk",
    "refused",
    "refusal_code",
    "label",
    "indeterminate",
    "probabilities",
    "ood",
    "bit_depth",
    "study__width",
    "study__height",
    "study__dicom_modality",
)


@dataclass
class Outcome:
    """One signal's result before it is stored."""

    signal: str
    value: float | None
    n: int
    reference: str
    crossed: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def threshold(self) -> float:
        return THRESHOLDS[self.signal]


@dataclass
class Window:
    """The reads of one window, and (when one exists) of the reference period."""

    reads: list[dict[str, Any]]
    reference: list[dict[str, Any]] | None
    reference_label: str


def _fetch(hospital_id: int, start: dt.datetime, end: dt.datetime, **filters: Any) -> list[dict[str, Any]]:
    return list(
        Diagnosis.objects.filter(hospital_id=hospital_id, created_at__gte=start, created_at__lt=end, **filters).values(
            *_READ_FIELDS
        )
    )


def _window(hospital_id: int, start: dt.datetime, end: dt.datetime, **filters: Any) -> Window:
    """The window's reads, and the first ``REFERENCE_DAYS`` of reads matching ``filters`` when
    they ended before the window began and hold ``MIN_REFERENCE`` reads."""
    reads = _fetch(hospital_id, start, end, **filters)
    first_read = Diagnosis.objects.filter(hospital_id=hospital_id, **filters).aggregate(first=Min("created_at"))[
        "first"
    ]
    first = (
        dt.datetime.combine(first_read.astimezone(dt.UTC).date(), dt.time.min, tzinfo=dt.UTC) if first_read else None
    )
    if first is not None and first + dt.timedelta(days=REFERENCE_DAYS) <= start:
        ref_end = first + dt.timedelta(days=REFERENCE_DAYS)
        reference = _fetch(hospital_id, first, ref_end, **filters)
        if len(reference) >= MIN_REFERENCE:
            last = ref_end - dt.timedelta(days=1)
            label = (
                f"the first {REFERENCE_DAYS} days of use ({first:%Y-%m-%d} to {last:%Y-%m-%d}, {len(reference)} reads)"
            )
            return Window(reads, reference, label)
    return Window(reads, None, "")


def _top(read: dict[str, Any]) -> float | None:
    values = [float(v) for v in read["probabilities"].values() if isinstance(v, int | float)]
    return max(values) if values else None


def _excess_rate(signal: str, hits: int, n: int, reference_rate: float, reference: str) -> Outcome:
    """Rate signals: the Wilson lower bound of the window's rate above the reference rate."""
    if n < MIN_WINDOW:
        return Outcome(signal, None, n, reference, details={"reason": f"fewer than {MIN_WINDOW} reads"})
    interval = wilson_interval(hits, n)
    assert interval is not None  # n >= MIN_WINDOW > 0
    low, high = interval
    value = low - reference_rate
    details = {"rate": hits / n, "low": low, "high": high, "reference_rate": reference_rate}
    return Outcome(signal, value, n, reference, crossed=value >= THRESHOLDS[signal], details=details)


def _distance(signal: str, current: Counter, window: Window, key: Callable[[dict[str, Any]], Any]) -> Outcome:
    """Categorical input signals: total variation against the first weeks."""
    n = sum(current.values())
    if window.reference is None:
        return Outcome(signal, None, n, "", details={"reason": f"waiting for {REFERENCE_DAYS} days of use"})
    if n < MIN_WINDOW:
        return Outcome(signal, None, n, window.reference_label, details={"reason": f"fewer than {MIN_WINDOW} reads"})
    reference = Counter(str(key(r)) for r in window.reference)
    value = total_variation(current, reference)
    details = {"window": dict(current), "reference": dict(reference)}
    return Outcome(signal, value, n, window.reference_label, crossed=value >= THRESHOLDS[signal], details=details)


# --- input signals (every read of the hospital; task "router") ----------------------------------


def input_signals(window: Window, router: ModelVersion | None) -> list[Outcome]:
    reads = window.reads
    refused = sum(1 for r in reads if r["refused"])
    if window.reference is not None:
        ref_rate = sum(1 for r in window.reference if r["refused"]) / len(window.reference)
        ref_label = window.reference_label
    else:
        extra = router.card.get("extra_test_metrics", {}) if router else {}
        ref_rate = float(extra.get("real_cases_wrongly_refused", 0.0))
        ref_label = f"the router card's test set ({router.version})" if router else "no refusals"
    outcomes = [_excess_rate(DriftSignal.REFUSAL_RATE, refused, len(reads), ref_rate, ref_label)]

    sizes = [max(r["study__width"] or 0, r["study__height"] or 0) for r in reads]
    if window.reference is None or len(reads) < MIN_WINDOW:
        reason = f"waiting for {REFERENCE_DAYS} days of use" if window.reference is None else "too few reads"
        outcomes.append(
            Outcome(DriftSignal.IMAGE_SIZE, None, len(reads), window.reference_label, details={"reason": reason})
        )
    else:
        ref_sizes = [max(r["study__width"] or 0, r["study__height"] or 0) for r in window.reference]
        current, reference = histogram(sizes, SIZE_EDGES), histogram(ref_sizes, SIZE_EDGES)
        value = population_stability_index(reference, current)
        outcomes.append(
            Outcome(
                DriftSignal.IMAGE_SIZE,
                value,
                len(reads),
                window.reference_label,
                crossed=value >= THRESHOLDS[DriftSignal.IMAGE_SIZE],
                details={"edges": SIZE_EDGES[:-1], "window": current, "reference": reference},
            )
        )

    def bits(read: dict[str, Any]) -> str:
        return str(read["bit_depth"] or "unknown")

    def tag(read: dict[str, Any]) -> str:
        return read["study__dicom_modality"] or NO_TAG

    outcomes.append(_distance(DriftSignal.BIT_DEPTH, Counter(bits(r) for r in reads), window, bits))
    outcomes.append(_distance(DriftSignal.MODALITY_TAGS, Counter(tag(r) for r in reads), window, tag))
    return outcomes


# --- model signals (the live specialist version's reads) --------------------------------------


def training_prior(mv: ModelVersion) -> dict[str, float]:
    """The class mix the version was trained on, from its card: the training class weights
    (n / (k · count_c), so the prior is proportional to 1 / weight), else the test split's support."""
    card = mv.card
    weights = (card.get("training") or {}).get("class_weights") or []
    if len(weights) == len(mv.labels) and all(float(w) > 0 for w in weights):
        inverse = {label: 1.0 / float(w) for label, w in zip(mv.labels, weights, strict=True)}
    else:
        per_class = ((card.get("test_metrics") or {}).get("per_class")) or {}
        inverse = {label: float(per_class.get(label, {}).get("support", 0)) for label in mv.labels}
    total = sum(inverse.values())
    return {k: v / total for k, v in inverse.items()} if total > 0 else {}


def card_confidence_histogram(mv: ModelVersion) -> list[int] | None:
    """The card's test-set reliability bins as counts over ``CONFIDENCE_EDGES`` (None without)."""
    bins = (mv.card.get("test_metrics") or {}).get("reliability") or []
    counts = [0] * (len(CONFIDENCE_EDGES) - 1)
    for b in bins:
        index = min(max(round(float(b["lo"]) * 15), 0), len(counts) - 1)
        counts[index] += int(b["count"])
    return counts if sum(counts) else None


def model_signals(hospital_id: int, window: Window, mv: ModelVersion) -> list[Outcome]:
    answered = [r for r in window.reads if not r["refused"]]
    outcomes = []

    prior = training_prior(mv)
    observed = Counter(r["label"] for r in answered)
    if len(answered) < MIN_WINDOW or not prior:
        outcomes.append(
            Outcome(DriftSignal.CLASS_MIX, None, len(answered), "", details={"reason": "too few reads or no prior"})
        )
    else:
        value = total_variation(observed, prior)
        p = chi_square_p(observed, prior)
        crossed = value >= THRESHOLDS[DriftSignal.CLASS_MIX] and p is not None and p < CLASS_MIX_P_VALUE
        outcomes.append(
            Outcome(
                DriftSignal.CLASS_MIX,
                value,
                len(answered),
                f"the training class mix of {mv.version}",
                crossed=crossed,
                details={"window": dict(observed), "prior": prior, "p_value": p},
            )
        )

    confidences = [c for r in answered if (c := _top(r)) is not None]
    reference: list[int] | None
    if window.reference is not None:
        reference = histogram(
            [c for r in window.reference if not r["refused"] and (c := _top(r)) is not None], CONFIDENCE_EDGES
        )
        ref_label = window.reference_label
    else:
        reference = card_confidence_histogram(mv)
        ref_label = f"the test set in the card of {mv.version}"
    if len(confidences) < MIN_WINDOW or not reference or not sum(reference):
        outcomes.append(
            Outcome(DriftSignal.CONFIDENCE, None, len(confidences), ref_label, details={"reason": "too few reads"})
        )
    else:
        current = histogram(confidences, CONFIDENCE_EDGES)
        value = population_stability_index(reference, current)
        outcomes.append(
            Outcome(
                DriftSignal.CONFIDENCE,
                value,
                len(confidences),
                ref_label,
                crossed=value >= THRESHOLDS[DriftSignal.CONFIDENCE],
                details={"window": current, "reference": reference},
            )
        )

    def disagreement(reads: list[dict[str, Any]]) -> tuple[int, int]:
        labelled = [r for r in reads if not r["refused"] and not r["indeterminate"]]
        doctors = doctor_labels(hospital_id, [r["pk"] for r in labelled])
        reviewed = [r for r in labelled if r["pk"] in doctors]
        return sum(1 for r in reviewed if doctors[r["pk"]] != r["label"]), len(reviewed)

    corrected, reviewed = disagreement(window.reads)
    ref_corrected, ref_reviewed = disagreement(window.reference) if window.reference is not None else (0, 0)
    if ref_reviewed >= MIN_REFERENCE:
        ref_rate, ref_label = ref_corrected / ref_reviewed, window.reference_label
    else:
        accuracy = mv.accuracy
        ref_rate = 1.0 - accuracy if accuracy is not None else 0.0
        ref_label = f"the test error in the card of {mv.version}"
    outcomes.append(_excess_rate(DriftSignal.DISAGREEMENT, corrected, reviewed, ref_rate, ref_label))

    checked = [r for r in window.reads if not r["refused"] or r["refusal_code"] == RefusalCode.UNLIKE_TRAINING]
    unlike = sum(1 for r in checked if r["refused"])
    outcome = _excess_rate(DriftSignal.OOD_RATE, unlike, len(checked), 0.0, f"the feature-space check of {mv.version}")
    ratios = [
        float(r["ood"]["score"]) / float(r["ood"]["threshold"])
        for r in checked
        if isinstance(r["ood"].get("score"), int | float) and r["ood"].get("threshold")
    ]
    if ratios:
        outcome.details["mean_score_over_threshold"] = sum(ratios) / len(ratios)
    outcomes.append(outcome)
    return outcomes


# --- running the checks, alerts ----------------------------------------------------------------


def compute(hospital_id: int, day: dt.date) -> dict[tuple[str, ModelVersion | None], list[Outcome]]:
    """Every signal of the hospital for the window ending at the start of ``day`` (UTC), keyed by
    task and the version it is about (None for the input signals)."""
    end = dt.datetime.combine(day, dt.time.min, tzinfo=dt.UTC)
    start = end - dt.timedelta(days=WINDOW_DAYS)
    hospital = Hospital.objects.get(pk=hospital_id)
    results: dict[tuple[str, ModelVersion | None], list[Outcome]] = {}
    router = live_version(hospital, Task.ROUTER)
    results[(Task.ROUTER, router)] = input_signals(_window(hospital_id, start, end), router)
    for task in SPECIALIST_TASKS:
        mv = live_version(hospital, task)
        if mv is not None:
            results[(task, mv)] = model_signals(
                hospital_id, _window(hospital_id, start, end, specialist_version=mv), mv
            )
    return results


def check_hospital(hospital_id: int, day: dt.date | None = None) -> list[DriftCheck]:
    """Compute and store every signal of the hospital for ``day`` (default today, UTC), open
    alerts for newly crossed thresholds and clear those back under. Idempotent per day. Runs
    inside the hospital's tenant scope."""
    day = day or timezone.now().astimezone(dt.UTC).date()
    checks = []
    for (task, mv), outcomes in compute(hospital_id, day).items():
        for outcome in outcomes:
            with transaction.atomic():
                check, _ = DriftCheck.objects.update_or_create(
                    hospital_id=hospital_id,
                    task=task,
                    signal=outcome.signal,
                    day=day,
                    defaults={
                        "model_version": mv,
                        "value": outcome.value,
                        "threshold": outcome.threshold,
                        "n": outcome.n,
                        "reference": outcome.reference[:200],
                        "details": outcome.details,
                        "crossed": outcome.crossed,
                    },
                )
                _update_alerts(check)
            checks.append(check)
    return checks


def _update_alerts(check: DriftCheck) -> DriftAlert | None:
    uncleared = (
        DriftAlert.objects.select_for_update()
        .filter(hospital_id=check.hospital_id, task=check.task, signal=check.signal, cleared_at__isnull=True)
        .first()
    )
    if not check.crossed:
        if uncleared is not None and check.value is not None:
            uncleared.cleared_at = timezone.now()
            uncleared.save(update_fields=["cleared_at"])
        return None
    if uncleared is not None:  # still over its threshold: already alerted
        return None
    assert check.value is not None  # a crossed check has a value
    alert = DriftAlert.objects.create(
        hospital_id=check.hospital_id,
        task=check.task,
        signal=check.signal,
        check_row=check,
        value=check.value,
        threshold=check.threshold,
        message=alert_message(check)[:500],
    )
    audit.record(
        "model.drift_alert",
        hospital=check.hospital,
        obj=alert,
        task=check.task,
        signal=check.signal,
        value=check.value,
        threshold=check.threshold,
        day=check.day.isoformat(),
    )
    _notify_admins(alert)
    return alert


def alert_message(check: DriftCheck) -> str:
    return (
        f"{DriftSignal(check.signal).label} ({SCOPE[check.task]}): {check.value:.2f} in the {WINDOW_DAYS} days to "
        f"{check.day:%Y-%m-%d}, at or above the threshold {check.threshold:g}, over {check.n} reads, "
        f"compared with {check.reference or 'the reference'}."
    )


def hospital_admins(hospital_id: int) -> list[Any]:
    return list(User.objects.filter(pk__in=active_admin_ids(hospital_id)).order_by("pk"))


def _notify_admins(alert: DriftAlert) -> None:
    hospital = alert.hospital
    url = reverse("diagnosis:models", args=[hospital.slug]) + f"#alert-{alert.pk}"
    title = f"AI drift alert: {DriftSignal(alert.signal).label.lower()}"
    admins = hospital_admins(hospital.pk)
    for admin in admins:
        notify(
            hospital_id=hospital.pk,
            user_id=admin.pk,
            kind=NotificationKind.DRIFT_ALERT,
            title=title,
            body=alert.message,
            url=url,
            data={"alert": alert.pk},
        )
    recipients = [a.email for a in admins if a.email]
    if recipients:
        subject = f"[ImageMedix] {title} at {hospital.name}"
        body = (
            f"{alert.message}\n\nThe AI's results may be less reliable until this is understood. "
            f"Review and acknowledge the alert on the models page: {absolute_url(url)}\n"
        )
        transaction.on_commit(lambda: _send(subject, body, recipients))


def _send(subject: str, body: str, recipients: list[str]) -> None:
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
    except Exception:  # noqa: BLE001 - the alert and the notifications are stored; mail is a courtesy
        log.exception("Could not e-mail the drift alert to %s", recipients)


def acknowledge(alert: DriftAlert, user: Any, note: str = "", *, request: HttpRequest | None = None) -> DriftAlert:
    """A hospital admin has seen the alert (and says what was done): it leaves the dashboard."""
    with transaction.atomic():
        alert = DriftAlert.objects.select_for_update().get(pk=alert.pk)
        if alert.acknowledged_at is None:
            alert.acknowledged_at, alert.acknowledged_by = timezone.now(), user
            alert.acknowledgement = (note or "").strip()[:500]
            alert.save(update_fields=["acknowledged_at", "acknowledged_by", "acknowledgement"])
            audit.record(
                "model.drift_acknowledge",
                hospital=alert.hospital,
                actor=user,
                obj=alert,
                request=request,
                task=alert.task,
                signal=alert.signal,
                note=alert.acknowledgement,
            )
    return alert
