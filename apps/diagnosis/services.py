"""The AI second read as verbs: run it for a study, confirm or correct its result (sending it,
and sending it again when it got stuck, is ``watchdog.py``). Each state change runs in a
transaction and writes an audit event.

``run_diagnosis`` is what the Celery task ``diagnose_study`` calls. It never loses a study:
whatever goes wrong, the study ends with a result (``done``; ``unsure`` when the read is
indeterminate; ``refused`` with a reason the clinician can read when the AI made no read) or
``failed`` (with a message saying the image is kept and can be re-run), except for
transient errors (database or broker briefly away), which it raises so the task retries.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import InterfaceError, OperationalError, connections, transaction
from django.db.models import Prefetch
from django.dispatch import Signal
from django.http import HttpRequest
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from apps.accounts import audit
from apps.accounts.tenancy import tenant_scope
from apps.studies.access import is_active_doctor
from apps.studies.models import RESULT_STATUSES, Modality, Study, StudyStatus
from apps.studies.services import set_study_status
from apps.studies.storage import TamperedFileError, delete_stored, read_encrypted, store_encrypted

from . import engine, registry
from .models import (
    SPECIALIST_FOR_ROUTE,
    DeploymentStage,
    Diagnosis,
    Feedback,
    FeedbackAction,
    ModelDeployment,
    ModelVersion,
    RefusalCode,
    ShadowResult,
    Task,
    candidates_phrase,
    label_display,
)

if TYPE_CHECKING:  # the pipeline (torch) is imported when a read runs, not at module import
    from .pipeline.core import PipelineResult

log = logging.getLogger(__name__)

#: Sent on commit after a doctor confirmed or corrected an AI read (hospital_id, diagnosis_id, feedback_id).
diagnosis_reviewed = Signal()

MSG_PROCESSING = "The AI second read is in progress."
MSG_CRASHED = "The AI read could not be completed; the image is kept and can be re-run."
MSG_TAMPERED = (
    "The stored image failed its integrity check, so the AI read was not run. "
    "The study is kept; please contact your administrator."
)
MSG_BROKER_DOWN = "The AI service is busy; the read will start automatically when it is back."
MSG_NO_MODELS = "The AI models are not installed on this server yet; the image is kept and can be re-run."
#: A refused read: the pill says "Not read by the AI", the message gives the pipeline's reason.
MSG_REFUSED = "Not read by the AI: {reason}"
MSG_REFUSED_DEFAULT_REASON = "the image was not recognised as a chest X-ray or brain MRI"
MSG_READY = "AI second read ready"
#: An indeterminate read: no label and no percentage, only the findings the AI hesitates between.
MSG_INDETERMINATE = "AI second read ready: indeterminate — {candidates}"

#: Errors that go away by themselves (database restarting, broker briefly unreachable): the task
#: retries these with backoff instead of failing the study.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    ConnectionError,
    TimeoutError,
    KombuOperationalError,
    RedisConnectionError,
    RedisTimeoutError,
)


# --- Reading results -----------------------------------------------------------------------


def latest_diagnosis(study: Study) -> Diagnosis | None:
    """The study's newest AI read (with its model versions), or None. Call inside the tenant scope
    after the access check (``access.get_study``); this helper does not check permissions."""
    return (
        Diagnosis.objects.filter(study=study, hospital_id=study.hospital_id)
        .select_related("router_version", "specialist_version")
        .order_by("-created_at", "-pk")
        .first()
    )


def diagnoses_prefetch() -> Prefetch:
    """For Study querysets listed with their AI read (the API's study lists): every listed study's
    diagnoses, with their model versions, in one query for the whole page."""
    # The versions' model cards and test metrics (several KB of JSON each) are not summarised:
    # decoding them for every row was a tenth of the API list's time.
    heavy = [
        f"{version}__{field}" for version in ("router_version", "specialist_version") for field in ("card", "metrics")
    ]
    return Prefetch(
        "diagnoses", queryset=Diagnosis.objects.select_related("router_version", "specialist_version").defer(*heavy)
    )


def newest_diagnosis(study: Study) -> Diagnosis | None:
    """The newest of the study's diagnoses, picked from the ``diagnoses_prefetch()`` cache when the
    queryset has it (no query), else from one query."""
    return max(study.diagnoses.all(), key=lambda d: (d.created_at, d.pk), default=None)


def diagnosis_summary(study: Study, diagnosis: Diagnosis | None = None) -> dict[str, Any] | None:
    """A JSON-ready summary of the study's latest AI read (the API and status.json use it)."""
    diagnosis = diagnosis if diagnosis is not None else latest_diagnosis(study)
    if diagnosis is None:
        return None
    return {
        "id": diagnosis.pk,
        "route": diagnosis.route,
        "refused": diagnosis.refused,
        "refusal_code": diagnosis.refusal_code or None,
        "refusal_reason": diagnosis.refusal_reason,
        "modality_warning": diagnosis.modality_warning,
        "task": diagnosis.task,
        "label": diagnosis.label,
        "label_display": diagnosis.label_display,
        "indeterminate": diagnosis.indeterminate,
        "candidates": diagnosis.candidates,
        "confidence": diagnosis.confidence,
        "probabilities": diagnosis.probabilities,
        "roi_box": diagnosis.roi_box,
        "has_overlay": diagnosis.has_overlay,
        "has_heatmap": diagnosis.has_heatmap,
        "models": {
            "router": {"version": diagnosis.router_version.version, "sha256": diagnosis.router_sha256},
            **(
                {
                    diagnosis.specialist_version.task: {
                        "version": diagnosis.specialist_version.version,
                        "sha256": diagnosis.specialist_sha256,
                    }
                }
                if diagnosis.specialist_version_id and diagnosis.specialist_version
                else {}
            ),
        },
        "timings_ms": diagnosis.timings_ms,
        "created_at": diagnosis.created_at.isoformat(),
    }


# --- Running the AI read ---------------------------------------------------------------------


def versions_key(router_mv: ModelVersion, specialist_mv: ModelVersion | None) -> str:
    """Names the model versions a diagnosis used; unique per study (idempotency)."""
    return f"{router_mv.pk}:{specialist_mv.pk if specialist_mv else '-'}"


def run_diagnosis(study_id: int, *, final_attempt: bool = True) -> Diagnosis | None:
    """Run the two-stage AI read of one study and store it. Idempotent: if this study already has
    a diagnosis by the model versions chosen for it, that one is returned and nothing runs.

    Runs inside the study's hospital scope (the ``diagnose_study`` task enters it); a study of
    another hospital is not found. Transient errors are raised for the caller (the Celery task)
    to retry, unless ``final_attempt``: then the study is marked failed like for any other error.
    """
    study = Study.objects.select_related("hospital").filter(pk=study_id).first()
    if study is None:
        log.warning("diagnose_study: study %s does not exist (deleted?)", study_id)
        return None
    try:
        return _read(study)
    except TRANSIENT_ERRORS:
        if not final_attempt:
            raise
        log.exception("AI read of study %s failed on a transient error after all retries", study_id)
        _fail_quietly(study_id, study.hospital_id, MSG_CRASHED)
        return None
    except Exception:
        log.exception("AI read of study %s crashed", study_id)
        _fail_quietly(study_id, study.hospital_id, MSG_CRASHED)
        return None


def give_up(study_id: int) -> None:
    """Mark a study failed (image kept, can be re-run) unless it already has a result: used when
    its read keeps killing the worker. Runs inside the study's hospital scope."""
    row = Study.objects.filter(pk=study_id).values_list("hospital_id", "status").first()
    if row is None or row[1] in RESULT_STATUSES:
        return
    _fail_quietly(study_id, row[0], MSG_CRASHED)


def note_send_failed(hospital_id: int, study_id: int) -> None:
    """The broker was unreachable when the read was sent: the study stays queued and says why.
    The watchdog sends it again once the broker is back."""
    with tenant_scope(hospital_id):
        Study.objects.filter(pk=study_id, status=StudyStatus.QUEUED).update(status_message=MSG_BROKER_DOWN)


def _set_status(
    study_id: int, hospital_id: int, status: str, message: str = "", *, outcome: str = "", **fields: Any
) -> None:
    """``set_study_status`` (which announces the change on commit), also stamping ``updated_at``:
    a queryset update skips ``auto_now``, and the watchdog and ``requeue_studies`` judge by it."""
    set_study_status(study_id, hospital_id, status, message, outcome=outcome, updated_at=timezone.now(), **fields)


def _fail_quietly(study_id: int, hospital_id: int, message: str) -> None:
    try:
        _set_status(study_id, hospital_id, StudyStatus.FAILED, message)
    except Exception:  # the database itself is away: requeue_studies recovers the study later
        log.exception("Could not mark study %s as failed", study_id)


def _read(study: Study) -> Diagnosis | None:
    hospital_id = study.hospital_id
    try:
        chosen = registry.choose_versions(study.pk, hospital_id)
    except registry.ModelNotAvailable as exc:
        log.error("No active model for task %s: cannot read study %s", exc, study.pk)
        _set_status(study.pk, hospital_id, StudyStatus.FAILED, MSG_NO_MODELS)
        return None
    router_mv = chosen[Task.ROUTER]
    specialists = {Task.CHEST.value: chosen[Task.CHEST], Task.BRAIN.value: chosen[Task.BRAIN]}

    candidate_keys = [versions_key(router_mv, None)] + [versions_key(router_mv, mv) for mv in specialists.values()]
    existing = Diagnosis.objects.filter(study=study, versions_key__in=candidate_keys).order_by("-pk").first()
    if existing is not None:
        # A rerun (a redelivered message, a read sent again): the result is stored, but the worker
        # that stored it may have died before its announcement went out. Announce it again from
        # what is committed; each recipient is notified once per result however often it runs.
        _announce_result(existing)
        return existing

    _set_status(study.pk, hospital_id, StudyStatus.PROCESSING, MSG_PROCESSING, processing_until=_lease_end())
    with _holding_lease(study.pk, hospital_id):
        return _read_leased(study, router_mv, specialists)


def _read_leased(study: Study, router_mv: ModelVersion, specialists: dict[str, ModelVersion]) -> Diagnosis | None:
    hospital_id = study.hospital_id
    try:
        data = read_encrypted(study.file_name, study.file_sha256)
    except TamperedFileError as exc:
        log.error("Study %s: stored file failed verification: %s", study.pk, exc)
        with transaction.atomic():
            audit.record("study.integrity_error", hospital=study.hospital, obj=study, detail=str(exc)[:200])
            _set_status(study.pk, hospital_id, StudyStatus.FAILED, MSG_TAMPERED)
        return None

    from .pipeline.decode import DecodeError  # the pipeline (torch) is imported here, not at module import

    pipeline = engine.get_pipeline(router_mv, specialists)
    try:
        result = pipeline.run(data)
    except DecodeError as exc:
        _set_status(study.pk, hospital_id, StudyStatus.FAILED, f"The image could not be read for the AI read: {exc}")
        return None
    diagnosis = _store_result(study, result, router_mv, specialists)
    run_shadows(diagnosis, data, router_mv, specialists)
    return diagnosis


# --- Shadow reads -----------------------------------------------------------------------------


def run_shadows(
    diagnosis: Diagnosis, data: bytes, router_mv: ModelVersion, specialists: dict[str, ModelVersion]
) -> list[ShadowResult]:
    """Read the image again with each version the hospital has in shadow, after the live read is
    stored and announced, and keep the results (``ShadowResult``), which nobody but the models
    dashboard sees.

    A specialist in shadow reads only studies the live router sent to its task; a router in
    shadow reads every study, with the live specialists behind it. A failing shadow read is
    logged and skipped: it never touches the live read or the study.
    """
    deployments = ModelDeployment.objects.filter(
        hospital_id=diagnosis.hospital_id, stage=DeploymentStage.SHADOW
    ).select_related("model_version")
    live = {router_mv.pk, *(mv.pk for mv in specialists.values())}
    stored = []
    for deployment in deployments:
        mv = deployment.model_version
        if mv.pk in live:  # this study's live read already is this version's (an A/B arm)
            continue
        if mv.task != Task.ROUTER and SPECIALIST_FOR_ROUTE.get(diagnosis.route) != mv.task:
            continue
        try:
            router = mv if mv.task == Task.ROUTER else router_mv
            pipeline = engine.get_pipeline(
                router, {**specialists, mv.task: mv} if mv.task != Task.ROUTER else specialists
            )
            stored.append(_store_shadow(diagnosis, mv, pipeline.run(data)))
        except Exception:  # noqa: BLE001 - a shadow read must never affect the live one
            log.exception("Shadow read of study %s by %s failed", diagnosis.study_id, mv)
    return stored


def _store_shadow(diagnosis: Diagnosis, mv: ModelVersion, result: PipelineResult) -> ShadowResult:
    refused = bool(result.refused or not result.task)
    refusal_code = (result.refusal_code or "") if refused else ""
    route = result.route if result.route in Modality.values else Modality.UNSUPPORTED
    shadow, _ = ShadowResult.objects.get_or_create(
        diagnosis=diagnosis,
        model_version=mv,
        defaults={
            "hospital_id": diagnosis.hospital_id,
            "route": route,
            "refused": refused,
            "refusal_code": refusal_code if refusal_code in RefusalCode.values else "",
            "label": "" if refused else (result.label or ""),
            "probabilities": {} if refused else _json_safe(result.probabilities),
            "indeterminate": not refused and result.indeterminate,
            "candidates": [str(c) for c in result.candidates] if not refused and result.indeterminate else [],
            "ood": _json_safe(result.ood),
            "timings_ms": _json_safe(result.timings_ms),
        },
    )
    return shadow


def _lease_end() -> dt.datetime:
    return timezone.now() + dt.timedelta(seconds=settings.DIAGNOSIS_LEASE_SECONDS)


@contextmanager
def _holding_lease(study_id: int, hospital_id: int) -> Iterator[None]:
    """Renew the study's lease (``processing_until``) every third of ``DIAGNOSIS_LEASE_SECONDS``
    while the block runs, from a thread of its own (the read itself is one long call). A worker
    that dies stops renewing, and the watchdog sends the read again once the lease has run out.
    Renewal also stops at the task's hard time limit, so a read that hangs is not leased forever."""
    seconds = settings.DIAGNOSIS_LEASE_SECONDS
    give_up_at = time.monotonic() + settings.DIAGNOSIS_TIME_LIMIT
    stop = threading.Event()

    def renew() -> None:
        try:
            with tenant_scope(hospital_id):
                while not stop.wait(seconds / 3) and time.monotonic() < give_up_at:
                    Study.objects.filter(pk=study_id, status=StudyStatus.PROCESSING).update(
                        processing_until=_lease_end()
                    )
        except Exception:  # noqa: BLE001 - a missed renewal only risks a second, idempotent read
            log.warning("Could not renew the lease of study %s", study_id, exc_info=True)
        finally:
            connections.close_all()  # this thread's own connections

    renewer = threading.Thread(target=renew, name=f"lease-study-{study_id}", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()


def _json_safe(value: Any) -> Any:
    """Pipeline values (numpy scalars, tuples) as plain JSON."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if hasattr(value, "tolist"):  # numpy array or scalar
        return _json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def result_status(diagnosis: Diagnosis) -> str:
    """The study status a stored AI read ends in: ``refused`` (no read), ``unsure``
    (indeterminate) or ``done`` (a suggested label)."""
    if diagnosis.refused:
        return StudyStatus.REFUSED
    if diagnosis.indeterminate:
        return StudyStatus.UNSURE
    return StudyStatus.DONE


def _announce_result(diagnosis: Diagnosis) -> None:
    """Move the study to the status of its stored read (announced on commit)."""
    modality = diagnosis.route if not diagnosis.refused else Modality.UNSUPPORTED
    _set_status(
        diagnosis.study_id,
        diagnosis.hospital_id,
        result_status(diagnosis),
        _done_message(diagnosis),
        outcome=f"diagnosis:{diagnosis.pk}",
        modality=modality,
    )


def _done_message(diagnosis: Diagnosis) -> str:
    """The study's status message (and the notification's body) for a stored read."""
    if diagnosis.refused:
        reason = (diagnosis.refusal_reason or MSG_REFUSED_DEFAULT_REASON).strip().rstrip(".")
        if len(reason) > 1 and reason[1].islower():  # "This image…" → "this image…", "DICOM…" stays
            reason = reason[0].lower() + reason[1:]
        return MSG_REFUSED.format(reason=reason)[:500]
    if diagnosis.indeterminate:
        message = MSG_INDETERMINATE.format(candidates=candidates_phrase(diagnosis.candidates))
    else:
        message = MSG_READY
        if diagnosis.label:
            confidence = diagnosis.confidence
            pct = f" ({confidence * 100:.0f}%)" if confidence is not None else ""
            message += f": {diagnosis.label_display}{pct}"
    if diagnosis.modality_warning:
        message += f". Note: {diagnosis.modality_warning}"
    return message[:500]


def _store_result(
    study: Study, result: PipelineResult, router_mv: ModelVersion, specialists: dict[str, ModelVersion]
) -> Diagnosis:
    task = result.task or ""
    refused = result.refused or not task
    route = result.route if result.route in Modality.values else Modality.UNSUPPORTED
    refusal_code = (result.refusal_code or "") if refused else ""
    if refusal_code and refusal_code not in RefusalCode.values:
        log.warning("Study %s: unknown refusal code %r from the pipeline, stored without it", study.pk, refusal_code)
        refusal_code = ""
    if not refused:
        specialist_mv = specialists.get(task)
    elif refusal_code == RefusalCode.UNLIKE_TRAINING:
        # The specialist ran and its feature-space check refused the image: the refusal is that
        # version's (its performance and drift figures count it).
        specialist_mv = specialists.get(SPECIALIST_FOR_ROUTE.get(route, ""))
    else:
        specialist_mv = None
    indeterminate = not refused and result.indeterminate
    folder = f"diagnoses/h{study.hospital_id}"
    overlay_png = None if refused else result.overlay_png
    heatmap_png = None if refused else result.heatmap_png
    overlay = store_encrypted(overlay_png, folder=folder, suffix=".png") if overlay_png else None
    heatmap = store_encrypted(heatmap_png, folder=folder, suffix=".png") if heatmap_png else None
    stored = [blob.name for blob in (overlay, heatmap) if blob]
    fields = {
        "hospital": study.hospital,
        "route": route,
        "route_probabilities": _json_safe(result.route_probabilities),
        "refused": refused,
        "refusal_code": refusal_code,
        "refusal_reason": (result.refusal_reason or ("not recognised" if refused else ""))[:500],
        "modality_warning": (result.modality_warning or "")[:500],
        "task": "" if refused else task,
        "label": "" if refused else (result.label or ""),
        "probabilities": {} if refused else _json_safe(result.probabilities),
        "indeterminate": indeterminate,
        "candidates": [str(c) for c in result.candidates] if indeterminate else [],
        "ood": _json_safe(result.ood),
        "bit_depth": result.bit_depth,
        "overlay_name": overlay.name if overlay else "",
        "overlay_sha256": overlay.sha256 if overlay else "",
        "overlay_key_id": overlay.key_id if overlay else "",
        "heatmap_name": heatmap.name if heatmap else "",
        "heatmap_sha256": heatmap.sha256 if heatmap else "",
        "heatmap_key_id": heatmap.key_id if heatmap else "",
        "roi_box": None if refused else _json_safe(result.roi_box),
        "router_version": router_mv,
        "router_sha256": router_mv.weights_sha256,
        "specialist_version": specialist_mv,
        "specialist_sha256": specialist_mv.weights_sha256 if specialist_mv else "",
        "timings_ms": _json_safe(result.timings_ms),
    }
    try:
        with transaction.atomic():
            diagnosis, created = Diagnosis.objects.get_or_create(
                study=study, versions_key=versions_key(router_mv, specialist_mv), defaults=fields
            )
            if created:
                audit.record(
                    "diagnosis.create",
                    hospital=study.hospital,
                    obj=diagnosis,
                    study=study.pk,
                    route=route,
                    label=diagnosis.label,
                    refused=refused,
                    refusal_code=refusal_code,
                    indeterminate=indeterminate,
                    router=router_mv.version,
                    specialist=specialist_mv.version if specialist_mv else "",
                )
            _announce_result(diagnosis)
    except BaseException:
        for name in stored:
            delete_stored(name)
        raise
    if not created:  # a concurrent run stored the same read first
        for name in stored:
            delete_stored(name)
    return diagnosis


# --- Feedback -------------------------------------------------------------------------------


def _check_reviewer(diagnosis: Diagnosis, doctor: Any) -> None:
    if diagnosis.refused or not diagnosis.label:
        raise ValidationError("This image was not read by a specialist model, so there is no AI label to review.")
    if not is_active_doctor(doctor, diagnosis.hospital_id):
        raise ValidationError("Only doctors of this hospital can confirm or correct an AI read.")


def _give_feedback(
    diagnosis: Diagnosis, doctor: Any, action: str, label: str, comment: str, request: HttpRequest | None
) -> Feedback:
    with transaction.atomic():
        feedback = Feedback.objects.create(
            hospital_id=diagnosis.hospital_id,
            diagnosis=diagnosis,
            doctor=doctor,
            action=action,
            corrected_label=label if action == FeedbackAction.CORRECT else "",
            comment=(comment or "").strip(),
        )
        audit.record(
            f"diagnosis.{action}",
            hospital=diagnosis.hospital,
            actor=doctor,
            obj=diagnosis,
            request=request,
            study=diagnosis.study_id,
            ai_label=diagnosis.label,
            label=feedback.final_label,
            feedback=feedback.pk,
        )
        hospital_id, diagnosis_id, feedback_id = diagnosis.hospital_id, diagnosis.pk, feedback.pk
        transaction.on_commit(
            lambda: diagnosis_reviewed.send(
                sender=Feedback, hospital_id=hospital_id, diagnosis_id=diagnosis_id, feedback_id=feedback_id
            )
        )
    return feedback


def confirm_diagnosis(
    diagnosis: Diagnosis, doctor: Any, comment: str = "", *, request: HttpRequest | None = None
) -> Feedback:
    """The doctor agrees with the AI label. An indeterminate read has no label to agree with:
    record the doctor's own label with ``correct_diagnosis`` instead."""
    _check_reviewer(diagnosis, doctor)
    if diagnosis.indeterminate:
        raise ValidationError(
            f"The AI could not decide between {candidates_phrase(diagnosis.candidates, 'and')}, "
            "so there is no AI label to confirm. Choose the label you read instead."
        )
    return _give_feedback(diagnosis, doctor, FeedbackAction.CONFIRM, "", comment, request)


def correct_diagnosis(
    diagnosis: Diagnosis, doctor: Any, label: str, comment: str = "", *, request: HttpRequest | None = None
) -> Feedback:
    """The doctor replaces the AI label by ``label``, one of the specialist model's classes.
    Choosing the AI's own label is recorded as a confirmation, except on an indeterminate read:
    there the AI suggested no label, so the doctor's label is always recorded as theirs."""
    _check_reviewer(diagnosis, doctor)
    allowed = specialist_labels(diagnosis)
    if label not in allowed:
        choices = ", ".join(label_display(x) for x in allowed)
        raise ValidationError(f"Choose one of the labels this model knows: {choices}.")
    if label == diagnosis.label and not diagnosis.indeterminate:
        return _give_feedback(diagnosis, doctor, FeedbackAction.CONFIRM, "", comment, request)
    return _give_feedback(diagnosis, doctor, FeedbackAction.CORRECT, label, comment, request)


def specialist_labels(diagnosis: Diagnosis) -> list[str]:
    """The classes the diagnosis's specialist model can answer, in its output order."""
    if diagnosis.specialist_version_id and diagnosis.specialist_version and diagnosis.specialist_version.labels:
        return [str(x) for x in diagnosis.specialist_version.labels]
    return [str(x) for x in (diagnosis.probabilities or {})]


def latest_feedback(diagnosis: Diagnosis) -> Feedback | None:
    return diagnosis.feedback.select_related("doctor").order_by("-created_at", "-pk").first()
