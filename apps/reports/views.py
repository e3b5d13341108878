"""Pages of the reports app: the doctor's review screen, report pages and PDF downloads, the
patient portal, and the patient history timeline.

Every view takes the hospital from ``request.tenant``, checks the role with ``role_required``,
fetches rows only through ``apps.studies.access`` / ``apps.reports.access`` (404 for anything
the user may not see), calls a service for every change, and audits every view or download of
patient data.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts import audit, reauth
from apps.accounts.models import Role
from apps.accounts.tenancy import role_required
from apps.chat.access import inbox
from apps.chat.models import Notification
from apps.diagnosis import services as diagnosis_services
from apps.diagnosis.models import Diagnosis
from apps.studies.access import cares_for, get_caseload_patient, get_study
from apps.studies.downloads import serve_encrypted
from apps.studies.viewer import image_title, viewer_config, viewer_layers

from . import access, ai, services
from .forms import FeedbackForm, ReportForm
from .models import PdfStatus, Report, ReportLocked, ReportStatus
from .timeline import patient_timeline

log = logging.getLogger(__name__)

CLINICAL = (Role.DOCTOR, Role.HOSPITAL_ADMIN)


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)


def _optional_url(name: str, slug: str, *args: Any) -> str:
    """The URL of another app's page, or "" if that app does not provide it (yet)."""
    try:
        return reverse(name, args=[slug, *args])
    except NoReverseMatch:
        return ""


# --- Review screen (doctor) ---------------------------------------------------------------


def _review_context(request: HttpRequest, study: Any, **forms: Any) -> dict[str, Any]:
    tenant = request.tenant  # type: ignore[attr-defined]
    diagnosis = ai.latest(study)
    result = ai.result(study, diagnosis)
    labels = ai.labels_for(result.task if result else "", diagnosis)
    report = services.current_report(study)
    feedback = _feedback_of(diagnosis)
    suggested = ""
    if feedback:
        suggested = feedback[0].final_label
    elif result:  # nothing is pre-selected for a refused or indeterminate read
        suggested = result.suggested_label
    if "report_form" not in forms:
        forms["report_form"] = ReportForm(labels=labels, initial=ReportForm.initial_for(report, labels, suggested))
    if "feedback_form" not in forms and result and not result.refused and result.label:
        forms["feedback_form"] = FeedbackForm(labels=labels, ai_label=result.label, indeterminate=result.indeterminate)
    return {
        "study": study,
        "patient": study.patient,
        "result": result,
        "report": report,
        "versions": list(access.reports_of_study(tenant, study)),
        "feedback": feedback,
        "can_write": tenant.is_doctor and cares_for(request.user, study.patient),
        "viewer": viewer_config(study, label=image_title(study)),
        "layers": viewer_layers(study, diagnosis),
        **forms,
    }


def _review_url(hospital_slug: str, study_pk: int) -> str:
    return reverse("reports:review", args=[hospital_slug, study_pk]) + "#report-heading"


def _feedback_of(diagnosis: Diagnosis | None) -> list[Any]:
    if diagnosis is None:
        return []
    return list(diagnosis.feedback.select_related("doctor").order_by("-created_at", "-id"))


@role_required(Role.DOCTOR)
@require_http_methods(["GET", "POST"])
def review(request: HttpRequest, hospital_slug: str, study_pk: int) -> HttpResponse:
    """The review screen: image and heatmap, the AI result, the doctor's verdict and report.

    POST saves the report draft (``action=save``) or saves and signs it (``action=sign``). Signing
    needs a fresh re-authentication (``apps.accounts.reauth``): without one the draft is saved and
    the doctor confirms their identity, then comes back here to sign.
    """
    tenant = request.tenant  # type: ignore[attr-defined]
    study = get_study(tenant, study_pk)
    if request.method == "POST":
        result = ai.result(study)
        labels = ai.labels_for(result.task if result else "", result.diagnosis if result else None)
        form = ReportForm(request.POST, labels=labels)
        if form.is_valid():
            try:
                report = services.start_report(study, request.user, request=request)
                services.save_draft(
                    report,
                    request.user,
                    findings=form.cleaned_data["findings"],
                    impression=form.cleaned_data["impression"],
                    final_label=form.cleaned_data["label"],
                    request=request,
                )
                if request.POST.get("action") == "sign":
                    services.check_complete(report)  # say what is missing before asking for the password
                    if not reauth.is_fresh(request):
                        messages.info(request, "Your report is saved as a draft. Confirm it is you to sign it.")
                        return reauth.ask(request, "sign", _review_url(hospital_slug, study.pk))
                    services.sign_report(report, request.user, request=request)
                    messages.success(request, f"Report version {report.version} signed. The PDF is being prepared.")
                else:
                    messages.success(request, "Draft saved.")
                return redirect("reports:review", hospital_slug=hospital_slug, study_pk=study.pk)
            except (ReportLocked, ValidationError) as exc:
                form.add_error(None, _error_text(exc))
        context = _review_context(request, study, report_form=form)
        return render(request, "reports/review.html", context, status=400)
    audit.record("study.review", hospital=tenant.hospital, actor=request.user, obj=study, request=request)
    return render(request, "reports/review.html", _review_context(request, study))


@role_required(Role.DOCTOR)
@require_POST
def feedback(request: HttpRequest, hospital_slug: str, study_pk: int) -> HttpResponse:
    """Confirm or correct the AI label (feeds ``Feedback`` and the retraining export). On an
    indeterminate read there is no label to confirm: the doctor records their own label."""
    tenant = request.tenant  # type: ignore[attr-defined]
    study = get_study(tenant, study_pk)
    diagnosis = ai.latest(study)
    result = ai.result(study, diagnosis)
    if result is None or result.refused or not result.label:
        raise Http404("There is no AI label to confirm or correct on this study.")
    labels = ai.labels_for(result.task, diagnosis)
    form = FeedbackForm(request.POST, labels=labels, ai_label=result.label, indeterminate=result.indeterminate)
    if form.is_valid():
        comment = form.cleaned_data["comment"]
        try:
            if form.cleaned_data["action"] == "confirm":
                diagnosis_services.confirm_diagnosis(diagnosis, request.user, comment, request=request)
                messages.success(request, f"You confirmed the AI label “{result.label_display}”.")
            else:
                label = form.cleaned_data["corrected_label"]
                diagnosis_services.correct_diagnosis(diagnosis, request.user, label, comment, request=request)
                if result.indeterminate:
                    messages.success(request, f"You recorded your label “{ai.display_label(label)}”.")
                else:
                    messages.success(request, f"You corrected the AI label to “{ai.display_label(label)}”.")
            return redirect("reports:review", hospital_slug=hospital_slug, study_pk=study.pk)
        except ValidationError as exc:
            form.add_error(None, _error_text(exc))
    context = _review_context(request, study, feedback_form=form)
    return render(request, "reports/review.html", context, status=400)


@role_required(Role.DOCTOR)
@require_POST
def amend(request: HttpRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """Start an amendment of a signed report (a new draft version) and go back to the review.
    Like signing, it needs a fresh re-authentication."""
    tenant = request.tenant  # type: ignore[attr-defined]
    report = access.get_clinical_report(tenant, pk)
    if not reauth.is_fresh(request):
        return reauth.ask(request, "amend", _review_url(hospital_slug, report.study_id))
    try:
        amendment = services.amend_report(report, request.user, request=request)
    except ReportLocked as exc:
        messages.error(request, str(exc))
    else:
        messages.info(
            request, f"Version {amendment.version} started. Edit it, then sign to replace version {report.version}."
        )
    return redirect("reports:review", hospital_slug=hospital_slug, study_pk=report.study_id)


# --- Report pages and downloads ------------------------------------------------------------


@role_required(*CLINICAL)
@require_GET
def detail(request: HttpRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """One version of a report, read-only (every version stays readable)."""
    tenant = request.tenant  # type: ignore[attr-defined]
    report = access.get_clinical_report(tenant, pk)
    audit.record("report.view", hospital=tenant.hospital, actor=request.user, obj=report, request=request)
    return render(
        request,
        "reports/detail.html",
        {"report": report, "versions": list(access.reports_of_study(tenant, report.study)), "patient": report.patient},
    )


@role_required(*CLINICAL, Role.PATIENT)
@require_GET
def pdf(request: HttpRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """Download a signed report's PDF: the patient (their own), their doctors, hospital admins."""
    tenant = request.tenant  # type: ignore[attr-defined]
    report = access.get_report(tenant, pk)
    if not report.is_signed:
        raise Http404("Drafts have no PDF.")
    if not report.pdf_ready:
        context = {"report": report, "patient_view": not (tenant.is_clinical and _clinical_sees(tenant, report))}
        status = 409 if report.pdf_status == PdfStatus.FAILED else 202
        return render(request, "reports/pdf_pending.html", context, status=status)
    return serve_encrypted(
        request,
        stored_name=report.pdf_name,
        stored_sha256=report.pdf_sha256,
        what="report PDF",
        content_type="application/pdf",
        filename=f"report-{_safe(report.patient.mrn)}-v{report.version}.pdf",
        inline=False,
        hospital=tenant.hospital,
        obj=report,
        action="report.download",
        error_page=lambda message: render(request, "reports/pdf_pending.html", {"report": report, "unreadable": True}),
        sha256=report.pdf_sha256,
    )


def _clinical_sees(tenant: Any, report: Report) -> bool:
    return Report.objects.clinical_for(tenant).filter(pk=report.pk).exists()


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:40]


@role_required(*CLINICAL)
@require_POST
def pdf_retry(request: HttpRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """Queue the PDF again after a failed rendering."""
    tenant = request.tenant  # type: ignore[attr-defined]
    report = access.get_clinical_report(tenant, pk)
    try:
        services.request_pdf(report, request.user, request=request)
    except ReportLocked as exc:
        raise Http404(str(exc))
    messages.info(request, "The PDF is being prepared again.")
    return redirect("reports:detail", hospital_slug=hospital_slug, pk=report.pk)


# --- Patient portal ---------------------------------------------------------------------


@role_required(Role.PATIENT)
@require_GET
def my_home(request: HttpRequest, hospital_slug: str) -> HttpResponse:
    """Where patients land: their signed reports, messages and notifications, in plain words."""
    tenant = request.tenant  # type: ignore[attr-defined]
    reports = list(
        Report.objects.signed_for_patient(tenant)
        .select_related("signed_by", "study", "patient")
        .order_by("-signed_at", "-pk")
    )
    current = [r for r in reports if r.status == ReportStatus.SIGNED]
    older = [r for r in reports if r.status == ReportStatus.AMENDED]
    audit.record(
        "portal.home", hospital=tenant.hospital, actor=request.user, request=request, reports=[r.pk for r in reports]
    )
    return render(
        request,
        "reports/my_home.html",
        {
            "current_reports": current,
            "older_reports": older,
            "notifications": _recent_notifications(tenant),
            "inbox_url": _optional_url("chat:inbox", hospital_slug),
            "notifications_url": _optional_url("chat:notifications", hospital_slug),
            "conversations": _conversations(tenant),
        },
    )


@role_required(Role.PATIENT)
@require_GET
def my_report(request: HttpRequest, hospital_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    report = access.get_patient_report(tenant, pk)
    newer = None
    if report.status == ReportStatus.AMENDED:
        newer = Report.objects.signed_for_patient(tenant).filter(study=report.study, status=ReportStatus.SIGNED).first()
    audit.record("report.view", hospital=tenant.hospital, actor=request.user, obj=report, request=request)
    return render(
        request,
        "reports/my_report.html",
        {
            "report": report,
            "newer": newer,
            "final_label": ai.display_label(report.final_label),
            "inbox_url": _optional_url("chat:inbox", hospital_slug),
        },
    )


def _recent_notifications(tenant: Any, limit: int = 5) -> list[Any]:
    return list(Notification.objects.visible_to(tenant).order_by("-id")[:limit])


def _conversations(tenant: Any) -> list[Any]:
    try:
        return list(inbox(tenant)[:5])
    except Exception:  # the chat is a courtesy on this page; never let it break the reports
        log.exception("Could not list conversations for the patient portal")
        return []


# --- History timeline ----------------------------------------------------------------------


@role_required(*CLINICAL)
@require_GET
def timeline(request: HttpRequest, hospital_slug: str, patient_pk: int) -> HttpResponse:
    tenant = request.tenant  # type: ignore[attr-defined]
    patient = get_caseload_patient(tenant, patient_pk)
    events = patient_timeline(tenant, patient)
    audit.record("patient.timeline", hospital=tenant.hospital, actor=request.user, obj=patient, request=request)
    return render(request, "reports/timeline.html", {"patient": patient, "events": events})
