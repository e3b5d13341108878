"""State changes for patients, caseloads and studies. Each runs in a transaction, writes an audit
event, and schedules side effects (the AI read) on commit."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts import audit
from apps.accounts.models import Hospital
from apps.accounts.tenancy import tenant_scope

from .access import cares_for, is_active_doctor
from .models import CareAssignment, Patient, Study, StudyStatus
from .storage import delete_stored, store_encrypted
from .validation import ValidatedUpload

#: Sent on commit when a doctor is taken off a patient's caseload (hospital_id, patient_id, doctor_id).
care_assignment_ended = Signal()
#: Sent on commit whenever a study's status changes (study_id, hospital_id, status, message, and
#: for a result the ``outcome`` it announces).
study_status_changed = Signal()
#: Sent inside the transaction that queues a study for the AI read (hospital_id, study_id): the
#: diagnosis app sends its task, on commit. (This app does not import the diagnosis app.)
read_requested = Signal()
#: Sent inside the transaction that marks a study as entered in error (hospital_id, study_id): the
#: reports app withdraws the study's reports from the patient's notifications.
study_entered_in_error = Signal()


def create_patient(
    hospital: Hospital, *, actor: Any = None, request: HttpRequest | None = None, **fields: Any
) -> Patient:
    with transaction.atomic():
        patient = Patient.objects.create(hospital=hospital, **fields)
        audit.record("patient.create", hospital=hospital, actor=actor, obj=patient, request=request)
    return patient


def assign_doctor(
    patient: Patient, doctor: Any, *, actor: Any = None, request: HttpRequest | None = None
) -> CareAssignment:
    """Put ``patient`` on ``doctor``'s caseload (the assignment row is all the access there is)."""
    if not is_active_doctor(doctor, patient.hospital):
        raise ValidationError("Only doctors of this hospital can be assigned to its patients.")
    with transaction.atomic():
        assignment, created = CareAssignment.objects.get_or_create(
            hospital=patient.hospital, patient=patient, doctor=doctor, defaults={"assigned_by": actor}
        )
        if created:
            audit.record(
                "care.assign",
                hospital=patient.hospital,
                actor=actor,
                obj=assignment,
                request=request,
                doctor=doctor.pk,
                patient=patient.pk,
            )
    return assignment


def unassign_doctor(patient: Patient, doctor: Any, *, actor: Any = None, request: HttpRequest | None = None) -> bool:
    """Take ``patient`` off ``doctor``'s caseload; their open chat sockets about them close."""
    with transaction.atomic():
        deleted, _ = CareAssignment.objects.filter(patient=patient, doctor=doctor).delete()
        if deleted:
            audit.record(
                "care.unassign", hospital=patient.hospital, actor=actor, obj=patient, request=request, doctor=doctor.pk
            )
            transaction.on_commit(lambda: _after_unassign(patient.hospital_id, patient.pk, doctor.pk))
    return bool(deleted)


def _after_unassign(hospital_id: int, patient_id: int, doctor_id: int) -> None:
    """Let other apps react to an ended assignment (the chat closes open sockets)."""
    care_assignment_ended.send(
        sender=CareAssignment, hospital_id=hospital_id, patient_id=patient_id, doctor_id=doctor_id
    )


def mark_entered_in_error(study: Study, doctor: Any, *, reason: str, request: HttpRequest | None = None) -> Study:
    """A doctor caring for the patient marks ``study`` as entered in error (wrong patient, wrong
    file…), saying why. It leaves the worklist, its reports leave the patient's view and no report
    can be started on it; nothing is deleted, and the audit trail keeps the event."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Reason: say why this study was entered in error."})
    if not cares_for(doctor, study.patient):
        raise ValidationError("Only a doctor caring for this patient can mark their studies as entered in error.")
    with transaction.atomic():
        locked = Study.objects.select_for_update().get(pk=study.pk, hospital_id=study.hospital_id)
        if locked.entered_in_error_at is not None:
            raise ValidationError("This study is already marked as entered in error.")
        locked.entered_in_error_at = timezone.now()
        locked.entered_in_error_by = doctor
        locked.entered_in_error_reason = reason
        locked.save(update_fields=["entered_in_error_at", "entered_in_error_by", "entered_in_error_reason"])
        audit.record(
            "study.entered_in_error", hospital=locked.hospital, actor=doctor, obj=locked, request=request, reason=reason
        )
        study_entered_in_error.send(sender=Study, hospital_id=locked.hospital_id, study_id=locked.pk)
    for field in ("entered_in_error_at", "entered_in_error_by", "entered_in_error_reason"):
        setattr(study, field, getattr(locked, field))
    return study


def same_file_studies(patient: Patient, sha256: str) -> list[Study]:
    """The patient's studies (not entered in error) whose file has this SHA-256: an upload of the
    same file again asks for confirmation first."""
    return list(Study.objects.filter(patient=patient, file_sha256=sha256).in_record().order_by("-created_at"))


def submit_study(
    patient: Patient,
    upload: ValidatedUpload,
    *,
    original_filename: str,
    actor: Any,
    request: HttpRequest | None = None,
) -> Study:
    """Store a validated upload encrypted, create its Study and queue the AI read on commit.

    If anything fails after the file was written, the file is deleted again: a refused or
    failed upload leaves neither a row nor a file behind.
    """
    hospital = patient.hospital
    suffix = {"png": ".png", "jpeg": ".jpg", "dicom": ".dcm"}[upload.source_format]
    blob = store_encrypted(upload.data, folder=f"studies/h{hospital.pk}", suffix=suffix)
    try:
        with transaction.atomic():
            study = Study.objects.create(
                hospital=hospital,
                patient=patient,
                uploaded_by=actor,
                status=StudyStatus.QUEUED,
                status_message="Waiting for the AI second read.",
                source_format=upload.source_format,
                original_filename=(original_filename or "upload")[:255],
                width=upload.width,
                height=upload.height,
                dicom_modality=upload.dicom_modality,
                dicom_display=upload.dicom_display,
                file_name=blob.name,
                file_sha256=blob.sha256,
                file_key_id=blob.key_id,
                file_size=blob.size,
            )
            audit.record(
                "study.upload",
                hospital=hospital,
                actor=actor,
                obj=study,
                request=request,
                sha256=blob.sha256,
                size=blob.size,
                format=upload.source_format,
            )
            study_id = study.pk
            # Announce "queued" before sending the read, so open pages see queued → processing → done.
            transaction.on_commit(
                lambda: study_status_changed.send(
                    sender=Study,
                    study_id=study_id,
                    hospital_id=hospital.pk,
                    status=StudyStatus.QUEUED,
                    message=study.status_message,
                ),
                robust=True,
            )
            # Sent on commit, after the "queued" announcement; a broker that is down is logged and
            # never undoes the committed study (the diagnosis watchdog sends the read again).
            read_requested.send(sender=Study, hospital_id=hospital.pk, study_id=study_id)
    except BaseException:
        delete_stored(blob.name)
        raise
    return study


def set_study_status(
    study_id: int, hospital_id: int, status: str, message: str = "", *, outcome: str = "", **fields: Any
) -> None:
    """Move a study's status (used by the diagnosis task) and announce it on commit, so the
    realtime layer can push it to the doctors' open pages.

    ``outcome`` names the result a finished status announces (``diagnosis:<id>``). Announcing the
    same outcome again (a rerun that finds the result stored) is safe: each recipient gets one
    notification per outcome."""
    with transaction.atomic(), tenant_scope(hospital_id):
        Study.objects.filter(pk=study_id).update(status=status, status_message=message[:500], **fields)
        transaction.on_commit(
            lambda: study_status_changed.send(
                sender=Study,
                study_id=study_id,
                hospital_id=hospital_id,
                status=status,
                message=message[:500],
                outcome=outcome,
            )
        )
