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
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts import audit, reauth
from apps.accounts.models import Role
from apps.accounts.tenancy import TenantRequest, role_required
from apps.chat.access import inbox
from apps.chat.models import Notification
from apps.diagnosis.models import Diagnosis
from apps.studies.access import cares_for, get_caseload_patient, get_study
from apps.studies.downloads import serve_encrypted, serve_study_image
from apps.studies.viewer import image_title, prior_studies, viewer_config, viewer_layers
from imagemedix.forms import error_items

from . import access, ai, services
from .forms import AmendForm, ReportForm
from .models import PdfStatus, Report, ReportLocked, ReportStatus
from .plain import AI_SECTION_TITLE, DIFFERENT_CONCLUSION, patient_summary
from .timeline import patient_timeline
from .worklist import STATE_ORDER, ReportingState, WorklistForm, worklist_studies

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

#: Where an amendment's reason waits while the doctor confirms their identity (per report).
PENDING_REASON = "amend_reason:{}"


def _form_for(study: Any, report: Report | None, result: ai.AIResult | None, data: Any = None) -> ReportForm:
    labels = ai.labels_for(result.task if result else "", result.diagnosis if result else None)
    amending = report is not None and report.is_draft and report.supersedes_id is not None
    ai_read = result is not None and not result.refused and bool(result.label)
    if data is not None:
        return ReportForm(data, labels=labels, ai_read=ai_read, amending=amending)
    return ReportForm(labels=labels, ai_read=ai_read, amending=amending, initial=ReportForm.initial_for(report, labels))


def _review_context(
    request: TenantRequest, study: Any, *, report_form: ReportForm | None = None, amend_form: AmendForm | None = None
) -> dict[str, Any]:
    tenant = request.tenant
    diagnosis = ai.latest(study)
    result = ai.result(study, diagnosis)
    report = services.current_report(study)
    report_form = report_form or _form_for(study, report, result)
    priors = prior_studies(tenant, study)
    prior = _chosen_prior(request, priors)
    return {
        "study": study,
        "patient": study.patient,
        "result": result,
        "report": report,
        "versions": list(access.reports_of_study(tenant, study)),
        "feedback": _feedback_of(diagnosis),
        "can_write": tenant.is_doctor and cares_for(request.user, study.patient),
        "viewer": viewer_config(study, label=image_title(study)),
        "layers": viewer_layers(study, diagnosis),
        "priors": priors,
        "prior": prior,
        "prior_viewer": viewer_config(prior, label=image_title(prior)) if prior else None,
        "prior_result": ai.result(prior) if prior else None,
        "prior_report": access.signed_report_of(tenant, prior) if prior else None,
        "report_form": report_form,
        "amend_form": amend_form or _amend_form(request, report),
        "errors": error_items(report_form, amend_form),
    }


def _amend_form(request: HttpRequest, report: Report | None) -> AmendForm:
    """The amendment form, with the reason typed before a re-authentication (if any)."""
    reason = request.session.get(PENDING_REASON.format(report.pk), "") if report else ""
    return AmendForm(initial={"reason": reason})


def _chosen_prior(request: HttpRequest, priors: list[Any]) -> Any:
    """The prior shown beside the study: ``?prior=<id>`` among ``priors``, else the newest."""
    wanted = request.GET.get("prior", "")
    return next((p for p in priors if str(p.pk) == wanted), priors[0] if priors else None)


def _feedback_of(diagnosis: Diagnosis | None) -> list[Any]:
    if diagnosis is None:
        return []
    return list(diagnosis.feedback.select_related("doctor").order_by("-created_at", "-id"))


@role_required(Role.DOCTOR)
@require_http_methods(["GET", "POST"])
def review(request: TenantRequest, hospital_slug: str, study_pk: int) -> HttpResponse:
    """The reading screen: the image (and a prior) in the viewer; beside it the AI result and one
    form for the doctor's read and report.

    POST saves the draft (``action=save``), or saves it and, when it is complete, goes on to the
    signature (``action=sign`` → ``reports:sign``: re-authentication, then confirmation).
    """
    tenant = request.tenant
    study = get_study(tenant, study_pk)
    if request.method == "GET":
        audit.record("study.review", hospital=tenant.hospital, actor=request.user, obj=study, request=request)
        return render(request, "reports/review.html", _review_context(request, study))
    form = _form_for(study, services.current_report(study), ai.result(study), request.POST)
    if form.is_valid():
        try:
            report = services.start_report(study, request.user, request=request)
            services.save_draft(
                report,
                request.user,
                findings=form.cleaned_data["findings"],
                impression=form.cleaned_data["impression"],
                final_label=form.cleaned_data["label"],
                ai_comment=form.cleaned_data.get("ai_comment", ""),
                amendment_reason=form.cleaned_data.get("amendment_reason"),
                request=request,
            )
        except (ReportLocked, ValidationError) as exc:
            form.add_error(None, _error_text(exc))
        else:
            if request.POST.get("action") != "sign":
                messages.success(request, f"Draft of version {report.version} saved.")
                return redirect("reports:review", hospital_slug=hospital_slug, study_pk=study.pk)
            missing = services.missing_for_signing(report)  # said before any password is asked for
            if not missing:
                return redirect("reports:sign", hospital_slug=hospital_slug, pk=report.pk)
            for field, message in missing.items():
                form.add_error(field if field in form.fields else None, message)
    return render(request, "reports/review.html", _review_context(request, study, report_form=form), status=400)


def _confirm_context(report: Report) -> dict[str, Any]:
    return {"report": report, "patient": report.patient, "study": report.study, "draft": draft_token(report)}


def draft_token(report: Report) -> str:
    """Names the exact draft the doctor confirmed: it changes whenever the draft is saved."""
    return report.updated_at.isoformat()


def signing_confirmation_problem(request: HttpRequest, report: Report) -> str:
    """Why this POST does not confirm the signature of ``report``: "" when it does (the doctor
    confirmed the very draft they were shown; their identity is checked by ``reauth`` first)."""
    if request.POST.get("draft") != draft_token(report):
        return "The draft changed after you were asked to confirm it. Check it again, then sign."
    return ""


@role_required(Role.DOCTOR)
@require_http_methods(["GET", "POST"])
def sign(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """The signature of a draft: GET shows exactly what will be signed and asks to confirm it;
    POST signs that draft. Both need a fresh re-authentication (``apps.accounts.reauth``), which
    brings the doctor back to this page."""
    tenant = request.tenant
    report = access.get_clinical_report(tenant, pk)
    review_url = reverse("reports:review", args=[hospital_slug, report.study_id])
    if not report.is_draft:
        messages.info(request, f"Version {report.version} is already signed.")
        return redirect(review_url)
    missing = services.missing_for_signing(report)
    if missing:
        messages.error(request, " ".join(missing.values()))
        return redirect(review_url)
    if not reauth.is_fresh(request):
        messages.info(request, "Your report is saved as a draft. Confirm it is you to sign it.")
        return reauth.ask(request, "sign", reverse("reports:sign", args=[hospital_slug, report.pk]))
    if request.method == "GET":
        return render(request, "reports/sign_confirm.html", _confirm_context(report))
    problem = signing_confirmation_problem(request, report)
    if problem:
        context = {**_confirm_context(report), "problem": problem}
        return render(request, "reports/sign_confirm.html", context, status=409)
    try:
        services.sign_report(report, request.user, request=request)
    except ValidationError as exc:
        messages.error(request, _error_text(exc))
        return redirect(review_url)
    messages.success(
        request, f"Report version {report.version} signed. The PDF link appears here as soon as the PDF is ready."
    )
    return redirect(review_url)


@role_required(Role.DOCTOR)
@require_POST
def amend(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """Start an amendment of a signed report (a new draft version, with its reason). Like signing,
    it needs a fresh re-authentication; the reason typed waits in the session meanwhile."""
    tenant = request.tenant
    report = access.get_clinical_report(tenant, pk)
    form = AmendForm(request.POST)
    if not form.is_valid():
        context = _review_context(request, report.study, amend_form=form)
        return render(request, "reports/review.html", context, status=400)
    review_url = reverse("reports:review", args=[hospital_slug, report.study_id])
    if not reauth.is_fresh(request):
        request.session[PENDING_REASON.format(report.pk)] = form.cleaned_data["reason"]
        return reauth.ask(request, "amend", review_url + "#amend-heading")
    request.session.pop(PENDING_REASON.format(report.pk), None)
    try:
        amendment = services.amend_report(report, request.user, reason=form.cleaned_data["reason"], request=request)
    except ReportLocked as exc:
        messages.error(request, str(exc))
    else:
        messages.info(
            request, f"Version {amendment.version} started. Edit it, then sign to replace version {report.version}."
        )
    return redirect(review_url)


# --- Worklist (clinicians) ------------------------------------------------------------------

WORKLIST_PAGE_SIZE = 25


class CountedPaginator(Paginator):
    """A paginator told its total (the worklist has it from its counts per state): no COUNT query."""

    def __init__(self, object_list: Any, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self.__dict__["count"] = count  # fills Paginator.count, a cached property


@role_required(*CLINICAL)
@require_GET
def worklist(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    """Every study the clinician sees with its reporting state: filters, counts per state, order
    (with the "AI-suspected findings first" triage aid). Studies entered in error are left out
    unless asked for by state."""
    tenant = request.tenant
    form = WorklistForm(request.GET, tenant=tenant)
    filters = form.cleaned_data if form.is_valid() else {}
    studies, counts = worklist_studies(tenant, filters)
    in_worklist = sum(c for s, c in counts.items() if s != ReportingState.ENTERED_IN_ERROR)
    total = counts.get(filters["state"], 0) if filters.get("state") else in_worklist
    page = CountedPaginator(studies, WORKLIST_PAGE_SIZE, count=total).get_page(request.GET.get("page"))
    labels = dict(ReportingState.choices)
    for study in page.object_list:
        study.reporting_state_label = labels[study.reporting_state]
    states = [
        {
            "value": state.value,
            "label": state.label,
            "count": counts.get(state.value, 0),
            "url": "?" + _query_with(request, state=state.value),
            "current": filters.get("state") == state.value,
        }
        for state in STATE_ORDER
    ]
    context = {
        "form": form,
        "page": page,
        "states": states,
        "all_url": "?" + _query_with(request, state=""),
        "in_worklist": in_worklist,
        "query": _query_with(request),
        "triage": filters.get("sort") == "triage",
        "errors": error_items(form),
    }
    return render(request, "reports/worklist.html", context, status=400 if form.errors else 200)


def _query_with(request: HttpRequest, **changes: str) -> str:
    """The page's query string without ``page``, with ``changes`` applied (empty = removed)."""
    params = request.GET.copy()
    params.pop("page", None)
    for key, value in changes.items():
        params.pop(key, None)
        if value:
            params[key] = value
    return params.urlencode()


# --- Report pages and downloads ------------------------------------------------------------


@role_required(*CLINICAL)
@require_GET
def detail(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """One version of a report, read-only (every version stays readable)."""
    tenant = request.tenant
    report = access.get_clinical_report(tenant, pk)
    audit.record("report.view", hospital=tenant.hospital, actor=request.user, obj=report, request=request)
    return render(
        request,
        "reports/detail.html",
        {"report": report, "versions": list(access.reports_of_study(tenant, report.study)), "patient": report.patient},
    )


@role_required(*CLINICAL, Role.PATIENT)
@require_GET
def pdf(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """Download a signed report's PDF: the patient (their own), their doctors, hospital admins."""
    tenant = request.tenant
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
def pdf_retry(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """Queue the PDF again after a failed rendering."""
    tenant = request.tenant
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
def my_home(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    """Where patients land: their signed reports, messages and notifications, in plain words."""
    tenant = request.tenant
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
def my_report(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """A signed report of the patient's own. One whose image was later entered in error is no
    longer shown; an old link to it (a notification, a bookmark) says it was withdrawn (410)."""
    tenant = request.tenant
    try:
        report = access.get_patient_report(tenant, pk)
    except Http404:
        withdrawn = access.get_withdrawn_patient_report(tenant, pk)
        audit.record(
            "report.view_withdrawn", hospital=tenant.hospital, actor=request.user, obj=withdrawn, request=request
        )
        context = {"report": withdrawn, "inbox_url": _optional_url("chat:inbox", hospital_slug)}
        return render(request, "reports/my_report_withdrawn.html", context, status=410)
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
            "summary": patient_summary(report),
            "ai_section_title": AI_SECTION_TITLE,
            "different_conclusion": DIFFERENT_CONCLUSION,
            "inbox_url": _optional_url("chat:inbox", hospital_slug),
        },
    )


@role_required(Role.PATIENT)
@require_GET
def my_report_image(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """The image a signed report is about, for the patient it belongs to (404 for anyone else's).
    The original image only: the AI heatmap is the AI's working, not part of the doctor's report."""
    tenant = request.tenant
    report = access.get_patient_report(tenant, pk)
    return serve_study_image(request, report.study, hospital=tenant.hospital, obj=report, action="report.view_image")


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
def timeline(request: TenantRequest, hospital_slug: str, patient_pk: int) -> HttpResponse:
    tenant = request.tenant
    patient = get_caseload_patient(tenant, patient_pk)
    events = patient_timeline(tenant, patient)
    audit.record("patient.timeline", hospital=tenant.hospital, actor=request.user, obj=patient, request=request)
    return render(request, "reports/timeline.html", {"patient": patient, "events": events})
