"""State changes of reports: start, save a draft, sign, amend, render the PDF.

Each runs in a transaction, writes an audit event, and schedules side effects (the PDF task,
the patient's notification push) on commit. A signed report is immutable: every verb here
refuses to change one (``ReportLocked``), and ``Report.save`` refuses as well.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.dispatch import Signal
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format

from apps.accounts import audit
from apps.accounts.tenancy import tenant_scope
from apps.diagnosis import services as diagnosis_services
from apps.studies.access import cares_for, is_active_doctor
from apps.studies.models import Study
from apps.studies.storage import delete_stored, store_encrypted

from . import ai
from .models import FINAL_LABEL_MAX, PdfStatus, Report, ReportLocked, ReportStatus

log = logging.getLogger(__name__)

__all__ = [
    "NotAllowed",
    "ReportLocked",
    "amend_report",
    "current_report",
    "missing_for_signing",
    "render_report_pdf_now",
    "request_pdf",
    "report_signed",
    "save_draft",
    "sign_report",
    "start_report",
]

#: Sent inside the transaction that signs a report or an amendment (hospital_id, report_id), after
#: its PDF is queued; receivers send their tasks on commit (the integration app exports it as FHIR).
report_signed = Signal()


#: Sent on commit when a signed report's PDF is stored or its rendering failed (hospital_id,
#: report_id, study_id, status): open pages show the download link without a reload.
report_pdf_changed = Signal()


class NotAllowed(PermissionDenied):
    """The user is not a doctor of this hospital caring for the patient."""


def _require_doctor(doctor: Any, study_or_report: Study | Report) -> None:
    """Reports are written and signed by doctors of the hospital who care for the patient, on
    studies that are not marked as entered in error."""
    if not is_active_doctor(doctor, study_or_report.hospital_id):
        raise NotAllowed("Only doctors of this hospital can write reports.")
    if not cares_for(doctor, study_or_report.patient):
        raise NotAllowed("Only a doctor caring for this patient can write their reports.")
    study = study_or_report if isinstance(study_or_report, Study) else study_or_report.study
    if study.entered_in_error:
        raise ValidationError("This study was entered in error: no report can be written or signed on it.")


def current_report(study: Study) -> Report | None:
    """The newest version of the study's report (a draft, or the signed one), or None."""
    return (
        Report.objects.filter(hospital_id=study.hospital_id, study=study)
        .select_related("author", "signed_by", "supersedes")
        .order_by("-version")
        .first()
    )


def start_report(study: Study, doctor: Any, *, request: HttpRequest | None = None) -> Report:
    """The study's open draft, created (version 1) if the study has no report yet.

    Raises ``ReportLocked`` if the study already has a signed report: amend that instead.
    """
    _require_doctor(doctor, study)
    with transaction.atomic():
        # Lock the study row so two clicks cannot create two first drafts.
        Study.objects.select_for_update().filter(pk=study.pk).first()
        report = current_report(study)
        if report is not None:
            if report.is_draft:
                return report
            raise ReportLocked("This study already has a signed report. Amend it to make changes.")
        report = Report.objects.create(
            hospital_id=study.hospital_id, study=study, patient_id=study.patient_id, author=doctor, version=1
        )
        audit.record("report.start", hospital=study.hospital, actor=doctor, obj=report, request=request, study=study.pk)
    return report


def save_draft(
    report: Report,
    doctor: Any,
    *,
    findings: str,
    impression: str,
    final_label: str,
    ai_comment: str = "",
    amendment_reason: str | None = None,
    request: HttpRequest | None = None,
) -> Report:
    """Save the doctor's text on a draft (``amendment_reason``, when given, only on an amendment;
    None keeps it). Refuses signed reports (``ReportLocked``)."""
    _require_doctor(doctor, report)
    final_label = (final_label or "").strip()
    if len(final_label) > FINAL_LABEL_MAX:
        raise ValidationError(f"Final label: it can be at most {FINAL_LABEL_MAX} characters.")
    with transaction.atomic():
        locked = Report.objects.select_for_update().get(pk=report.pk, hospital_id=report.hospital_id)
        if not locked.is_draft:
            raise ReportLocked("This report has been signed and can no longer be edited. Amend it instead.")
        locked.findings = findings or ""
        locked.impression = impression or ""
        locked.final_label = final_label
        locked.ai_comment = (ai_comment or "").strip()
        if locked.supersedes_id is not None and amendment_reason is not None:
            locked.amendment_reason = amendment_reason.strip()
        locked.save(
            update_fields=["findings", "impression", "final_label", "ai_comment", "amendment_reason", "updated_at"]
        )
        audit.record("report.save_draft", hospital=locked.hospital, actor=doctor, obj=locked, request=request)
    _refresh(report, locked)
    return report


def missing_for_signing(report: Report) -> dict[str, str]:
    """What a draft still lacks before it can be signed: {field: message naming the field}."""
    missing = {}
    if not report.final_label.strip():
        missing["final_label"] = "Final label: choose your conclusion before signing."
    if not report.impression.strip():
        missing["impression"] = "Impression: write your impression before signing."
    if report.supersedes_id is not None and not report.amendment_reason.strip():
        missing["amendment_reason"] = (
            f"Reason for the amendment: say why version {report.version - 1} is being amended."
        )
    return missing


def sign_report(report: Report, doctor: Any, *, request: HttpRequest | None = None) -> Report:
    """Sign a draft: record signer and time, snapshot the AI result, supersede the version it
    amends, then (on commit) render the PDF and notify the patient.

    Raises ``ReportLocked`` if it is already signed, ``ValidationError`` if it is incomplete.
    """
    _require_doctor(doctor, report)
    with transaction.atomic():
        locked = (
            Report.objects.select_for_update()
            .select_related("study", "patient", "hospital")
            .get(pk=report.pk, hospital_id=report.hospital_id)
        )
        if not locked.is_draft:
            raise ReportLocked("This report is already signed.")
        missing = missing_for_signing(locked)
        if missing:
            raise ValidationError(missing)

        snapshot = ai.snapshot(locked.study)
        for field, value in snapshot.items():
            setattr(locked, field, value)
        locked.status = ReportStatus.SIGNED
        locked.signed_by = doctor
        locked.signed_at = timezone.now()
        locked.pdf_status = PdfStatus.PENDING

        if locked.supersedes_id is not None:
            previous = Report.objects.select_for_update().get(pk=locked.supersedes_id)
            previous.status = ReportStatus.AMENDED
            previous.save(update_fields=["status", "updated_at"])
        # The previous version must leave "signed" before this one enters it (unique constraint).
        locked.save()
        audit.record(
            "report.sign",
            hospital=locked.hospital,
            actor=doctor,
            obj=locked,
            request=request,
            version=locked.version,
            final_label=locked.final_label,
            supersedes=locked.supersedes_id,
            amendment_reason=locked.amendment_reason,
        )
        _record_read(locked, doctor, request)
        _notify_patient(locked)
        _send_pdf_render(locked)
        report_signed.send(sender=Report, hospital_id=locked.hospital_id, report_id=locked.pk)
    _refresh(report, locked)
    return report


def amend_report(report: Report, doctor: Any, *, reason: str, request: HttpRequest | None = None) -> Report:
    """Start an amendment of a signed report, saying why: a new draft version that supersedes it
    once signed (the reason is shown in its PDF and the history).

    If an amendment draft already exists, it is returned. The signed version stays the valid
    report (and stays readable for ever) until the amendment is signed.
    """
    _require_doctor(doctor, report)
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": "Reason for the amendment: say why this report is being amended."})
    with transaction.atomic():
        locked = Report.objects.select_for_update().get(pk=report.pk, hospital_id=report.hospital_id)
        if locked.is_draft:
            raise ReportLocked("Only a signed report can be amended; this one is still a draft.")
        existing = Report.objects.filter(supersedes=locked).first()
        if existing is not None:
            if existing.is_draft:
                return existing
            raise ReportLocked("This version has already been amended. Amend the newest version instead.")
        amendment = Report.objects.create(
            hospital_id=locked.hospital_id,
            study_id=locked.study_id,
            patient_id=locked.patient_id,
            author=doctor,
            version=locked.version + 1,
            supersedes=locked,
            findings=locked.findings,
            impression=locked.impression,
            final_label=locked.final_label,
            amendment_reason=reason,
        )
        audit.record(
            "report.amend",
            hospital=locked.hospital,
            actor=doctor,
            obj=amendment,
            request=request,
            supersedes=locked.pk,
            version=amendment.version,
            reason=reason,
        )
    return amendment


def _record_read(report: Report, doctor: Any, request: HttpRequest | None) -> None:
    """The signing doctor's read of the AI result, for the feedback loop: their final label
    confirms the AI's label or corrects it (on an indeterminate read it is recorded as their own
    label). Nothing is recorded when the AI made no read, for a free-text label the model does
    not know, or when the doctor's latest read of this result already says the same."""
    diagnosis = ai.latest(report.study)
    if diagnosis is None or diagnosis.refused or not diagnosis.label:
        return
    if report.final_label not in diagnosis_services.specialist_labels(diagnosis):
        return
    previous = diagnosis.feedback.filter(doctor=doctor).order_by("-created_at", "-pk").first()
    if previous and previous.final_label == report.final_label and report.ai_comment in ("", previous.comment):
        return  # this doctor's read of this AI result is on record already
    diagnosis_services.correct_diagnosis(diagnosis, doctor, report.final_label, report.ai_comment, request=request)


def request_pdf(report: Report, actor: Any, *, request: HttpRequest | None = None) -> None:
    """Queue the PDF again for a signed report whose rendering failed."""
    if not report.is_signed:
        raise ReportLocked("Only signed reports have a PDF.")
    with transaction.atomic():
        Report.objects.filter(pk=report.pk, hospital_id=report.hospital_id).exclude(pdf_status=PdfStatus.READY).update(
            pdf_status=PdfStatus.PENDING
        )
        audit.record("report.pdf_requeue", hospital=report.hospital, actor=actor, obj=report, request=request)
        _send_pdf_render(report)


def _send_pdf_render(report: Report) -> None:
    """Render the PDF in a worker once this transaction commits. If the broker is down the PDF
    stays "pending" (logged); "Try again" on the report page sends it again."""
    from .tasks import render_report_pdf

    render_report_pdf.delay(hospital_id=report.hospital_id, report_id=report.pk)


def _notify_patient(report: Report) -> None:
    """Tell the patient (if they have a login) that a signed report is waiting for them.

    The notification row is written in the signing transaction; the chat app pushes it live on
    commit.
    """
    user_id = report.patient.user_id
    if user_id is None:
        return
    from apps.chat.notifications import notify

    amended = report.supersedes_id is not None
    notify(
        hospital_id=report.hospital_id,
        user_id=user_id,
        kind="report_signed",
        title="Your updated report is ready" if amended else "Your report is ready",
        body=f"Signed by {report.signed_by.display_name}." if report.signed_by else "",
        url=reverse("reports:my_report", args=[report.hospital.slug, report.pk]),
        data={"report_id": report.pk},
    )


WITHDRAWN_NOTE = "Withdrawn: the image was entered in error, so this report no longer applies."


def withdraw_from_patient(sender: Any, *, hospital_id: int, study_id: int, **kwargs: Any) -> None:
    """A study was entered in error (``study_entered_in_error``, inside that transaction): its
    signed reports leave the patient's view, so the patient's "Your report is ready" notifications
    about them lose their link and say that the report was withdrawn, and the patient is told once
    (a "Report withdrawn" notification linking to the page that explains it)."""
    from apps.chat.models import Notification, NotificationKind
    from apps.chat.notifications import notify

    with tenant_scope(hospital_id):
        reports = list(
            Report.objects.filter(
                study_id=study_id, status__in=(ReportStatus.SIGNED, ReportStatus.AMENDED)
            ).select_related("patient", "study", "hospital")
        )
        user_id = reports[0].patient.user_id if reports else None
        if user_id is None:
            return
        for notification in Notification.objects.filter(
            user_id=user_id, kind=NotificationKind.REPORT_SIGNED, data__report_id__in=[r.pk for r in reports]
        ):
            notification.url = ""
            notification.body = WITHDRAWN_NOTE
            notification.data = {**notification.data, "withdrawn": True}
            notification.save(update_fields=["url", "body", "data"])
        latest = max(reports, key=lambda r: r.version)
        taken = date_format(timezone.localtime(latest.study.created_at), "j F Y")
        notify(
            hospital_id=hospital_id,
            user_id=user_id,
            kind=NotificationKind.REPORT_WITHDRAWN,
            title="A report of yours was withdrawn",
            body=f"The image of {taken} was entered in error, so its report no longer applies. "
            "Your doctor can tell you more.",
            url=reverse("reports:my_report", args=[latest.hospital.slug, latest.pk]),
            data={"report_id": latest.pk, "withdrawn": True},
            key=f"study:{study_id}:withdrawn",
        )


def render_report_pdf_now(report_id: int) -> Report | None:
    """Render and store the PDF of a signed report (the Celery task's body; call in a scope).

    Idempotent: a report whose PDF is already stored is left alone, and if two runs race only
    the first stored file is kept.
    """
    from .pdf import render_report_pdf_bytes

    report = Report.objects.select_related("hospital", "patient", "study", "signed_by").filter(pk=report_id).first()
    if report is None or not report.is_signed:
        return None
    if report.pdf_ready:
        return report
    try:
        pdf = render_report_pdf_bytes(report)
    except Exception:
        log.exception("Rendering the PDF of report %s failed", report_id)
        Report.objects.filter(pk=report_id).exclude(pdf_status=PdfStatus.READY).update(pdf_status=PdfStatus.FAILED)
        _announce_pdf(report, PdfStatus.FAILED)
        raise
    blob = store_encrypted(pdf, folder=f"reports/h{report.hospital_id}", suffix=".pdf")
    try:
        with transaction.atomic():
            locked = Report.objects.select_for_update().get(pk=report_id)
            if locked.pdf_ready:  # another run won the race: keep its file
                transaction.on_commit(lambda: delete_stored(blob.name))
                return locked
            locked.pdf_name = blob.name
            locked.pdf_sha256 = blob.sha256
            locked.pdf_key_id = blob.key_id
            locked.pdf_size = blob.size
            locked.pdf_status = PdfStatus.READY
            locked.pdf_rendered_at = timezone.now()
            locked.save(
                update_fields=[
                    "pdf_name",
                    "pdf_sha256",
                    "pdf_key_id",
                    "pdf_size",
                    "pdf_status",
                    "pdf_rendered_at",
                    "updated_at",
                ]
            )
            audit.record("report.pdf_render", hospital=locked.hospital, obj=locked, sha256=blob.sha256, size=blob.size)
            _announce_pdf(locked, PdfStatus.READY)
    except BaseException:
        delete_stored(blob.name)
        raise
    return locked


def _announce_pdf(report: Report, status: str) -> None:
    hospital_id, report_id, study_id = report.hospital_id, report.pk, report.study_id
    transaction.on_commit(
        lambda: report_pdf_changed.send(
            sender=Report, hospital_id=hospital_id, report_id=report_id, study_id=study_id, status=status
        ),
        robust=True,
    )


def _refresh(target: Report, source: Report) -> None:
    """Copy the saved state back onto the caller's instance."""
    for field in target._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._loaded_status = source.status
