"""A patient's history: studies, AI reads, doctors' confirmations/corrections and reports, in
time order. Every row comes through its model's ``visible_to``, like on every other page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from apps.accounts.tenancy import Tenant
from apps.diagnosis.models import Diagnosis, Feedback, FeedbackAction
from apps.studies.models import Patient, Study

from .ai import display_label
from .models import Report, ReportStatus


@dataclass
class Event:
    when: datetime
    kind: str  # study | ai | ai_unsure | ai_refused | confirm | correct | report_signed | report_amended | report_draft
    title: str
    detail: str = ""
    who: str = ""
    url: str = ""  # reports link to their page; study events link by study_id (depends on the reader's role)
    study_id: int | None = None


def patient_timeline(tenant: Tenant, patient: Patient) -> list[Event]:
    """Every event of ``patient``'s record that the tenant's user sees, newest first."""
    from django.urls import reverse

    slug = patient.hospital.slug
    events: list[Event] = []
    studies = list(Study.objects.visible_to(tenant).filter(patient=patient).select_related("uploaded_by"))
    for study in studies:
        events.append(
            Event(
                when=study.created_at,
                kind="study",
                title=f"Study #{study.pk} uploaded" + (f" ({study.get_modality_display()})" if study.modality else ""),
                detail=study.get_status_display() + (f" — {study.status_message}" if study.status_message else ""),
                who=study.uploaded_by.display_name if study.uploaded_by else "",
                study_id=study.pk,
            )
        )
    events += _ai_events(tenant, patient)
    for report in Report.objects.visible_to(tenant).filter(patient=patient).select_related("signed_by", "author"):
        url = reverse("reports:detail", args=[slug, report.pk])
        if report.signed_at is not None:
            amended = report.supersedes_id is not None
            events.append(
                Event(
                    when=report.signed_at,
                    kind="report_amended" if amended else "report_signed",
                    title=f"Report v{report.version} signed" + (" (amendment)" if amended else ""),
                    detail=f"Final label: {display_label(report.final_label)}"
                    + (f". Reason for the amendment: {report.amendment_reason}" if report.amendment_reason else "")
                    + (" — since replaced by a newer version" if report.status == ReportStatus.AMENDED else ""),
                    who=report.signed_by.display_name if report.signed_by else "",
                    url=url,
                    study_id=report.study_id,
                )
            )
        else:
            events.append(
                Event(
                    when=report.created_at,
                    kind="report_draft",
                    title=f"Report v{report.version} started (draft)",
                    who=report.author.display_name,
                    url=url,
                    study_id=report.study_id,
                )
            )
    events.sort(key=lambda e: e.when, reverse=True)
    return events


def _ai_events(tenant: Tenant, patient: Patient) -> list[Event]:
    events: list[Event] = []
    diagnoses = Diagnosis.objects.visible_to(tenant).filter(study__patient=patient)
    for dx in diagnoses:
        if dx.refused:
            events.append(
                Event(
                    when=dx.created_at,
                    kind="ai_refused",
                    title=f"AI did not read study #{dx.study_id}",
                    detail=dx.refusal_reason,
                    study_id=dx.study_id,
                )
            )
            continue
        # An indeterminate read has no confidence: "Indeterminate: bacterial or viral pneumonia".
        confidence = None if dx.confidence is None else round(dx.confidence * 100)
        detail = dx.label_display + (f" ({confidence}% confidence)" if confidence is not None else "")
        if dx.modality_warning:
            detail += f" — {dx.modality_warning}"
        events.append(
            Event(
                when=dx.created_at,
                kind="ai_unsure" if dx.indeterminate else "ai",
                title=f"AI second read of study #{dx.study_id}",
                detail=detail,
                study_id=dx.study_id,
            )
        )
    feedback = Feedback.objects.visible_to(tenant).filter(diagnosis__study__patient=patient)
    for fb in feedback.select_related("doctor", "diagnosis"):
        corrected = fb.action == FeedbackAction.CORRECT
        if fb.diagnosis.indeterminate:  # no AI label was suggested: the doctor chose one
            title = f"Doctor's label recorded on an unsure AI read (study #{fb.diagnosis.study_id})"
        else:
            title = f"AI label {'corrected' if corrected else 'confirmed'} (study #{fb.diagnosis.study_id})"
        events.append(
            Event(
                when=fb.created_at,
                kind="correct" if corrected else "confirm",
                title=title,
                detail=(
                    f"{fb.diagnosis.label_display} → {display_label(fb.final_label)}"
                    if corrected
                    else display_label(fb.final_label)
                )
                + (f" — “{fb.comment}”" if fb.comment else ""),
                who=fb.doctor.display_name,
                study_id=fb.diagnosis.study_id,
            )
        )
    return events
