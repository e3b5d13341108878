"""Clinician pages under /h/<hospital_slug>/: caseload, patients, upload, studies, and the hospital
admin's audit log, members and assignments pages.

Every view gets the hospital from ``request.tenant`` (TenantMiddleware), checks the role with
``role_required``, fetches rows only through ``visible_to`` and ``apps.studies.access`` (404 for
anything the user may not see) and records an audit event whenever patient data is shown.
"""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts import audit, lockout, ratelimit
from apps.accounts import services as account_services
from apps.accounts.models import AuditEvent, Invitation, Membership, Role
from apps.accounts.tenancy import TenantRequest, role_required
from apps.diagnosis.services import latest_diagnosis
from imagemedix.forms import error_items

from . import access, auditlog, services
from .dicom import values_png
from .downloads import serve_encrypted, serve_study_image
from .forms import AssignmentForm, AuditFilterForm, EnteredInErrorForm, InviteForm, PatientForm, SearchForm, UploadForm
from .models import CareAssignment, Patient, Study
from .params import parse_id
from .search import matching, patient_label
from .validation import UploadRejected, validate_upload
from .viewer import image_title, viewer_config, viewer_layers

log = logging.getLogger(__name__)

CLINICAL = (Role.DOCTOR, Role.HOSPITAL_ADMIN)
CASELOAD_PAGE_SIZE = 25
PATIENT_SEARCH_PAGE = 20
AUDIT_PAGE_SIZE = 50


def _page(request: HttpRequest, items: Any, per_page: int) -> Page:
    return Paginator(items, per_page).get_page(request.GET.get("page"))


def _query_without_page(request: HttpRequest) -> str:
    params = request.GET.copy()
    params.pop("page", None)
    return params.urlencode()


def _with_latest_study(patients: QuerySet[Patient]) -> QuerySet[Patient]:
    """Annotate each patient with their newest study (id, status, message, date) and study count
    in the same query, so the caseload costs the same for 5 patients and for 500."""
    latest = Study.objects.filter(patient=OuterRef("pk")).order_by("-created_at", "-id")
    return patients.annotate(
        latest_study_id=Subquery(latest.values("pk")[:1]),
        latest_study_status=Subquery(latest.values("status")[:1]),
        latest_study_message=Subquery(latest.values("status_message")[:1]),
        latest_study_at=Subquery(latest.values("created_at")[:1]),
        study_count=Count("studies", distinct=True),
    )


@role_required(*CLINICAL)
def caseload(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    tenant = request.tenant
    form = SearchForm(request.GET)
    q = form.cleaned_data["q"].strip() if form.is_valid() else ""
    patients = access.caseload(tenant)
    if q:
        patients = matching(patients, q)
    # Count and slice the plain queryset; annotate only the rows of this page.
    page = _page(request, patients.order_by("family_name", "given_name", "mrn"), CASELOAD_PAGE_SIZE)
    annotated = {p.pk: p for p in _with_latest_study(patients.filter(pk__in=[p.pk for p in page.object_list]))}
    page.object_list = [annotated[p.pk] for p in page.object_list]
    audit.record(
        "caseload.view",
        hospital=tenant.hospital,
        actor=request.user,
        request=request,
        q=q[:100],
        page=page.number,
        patients=[p.pk for p in page.object_list],
    )
    return render(
        request,
        "studies/caseload.html",
        {
            "page": page,
            "q": q,
            "form": form,
            "has_any": bool(q) or page.paginator.count > 0,
            "query": _query_without_page(request),
        },
    )


@role_required(*CLINICAL)
def patient_detail(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant
    patient = access.get_caseload_patient(tenant, pk)
    studies = Study.objects.visible_to(tenant).filter(patient=patient).select_related("uploaded_by")
    care_team = (
        access.care_rows(tenant.hospital).filter(patient=patient).select_related("doctor").order_by("doctor__full_name")
    )
    audit.record("patient.view", hospital=tenant.hospital, actor=request.user, obj=patient, request=request)
    return render(
        request, "studies/patient_detail.html", {"patient": patient, "studies": studies, "care_team": care_team}
    )


@role_required(*CLINICAL)
def patient_create(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    tenant = request.tenant
    form = PatientForm(request.POST or None, hospital=tenant.hospital)
    if request.method == "POST" and form.is_valid():
        with transaction.atomic():
            patient = services.create_patient(tenant.hospital, actor=request.user, request=request, **form.cleaned_data)
            if tenant.is_doctor:
                # A doctor registering a patient is caring for them: put them on the caseload.
                services.assign_doctor(patient, request.user, actor=request.user, request=request)
        messages.success(request, f"{patient.full_name} was added.")
        return redirect("studies:patient_detail", hospital_slug=tenant.hospital.slug, pk=patient.pk)
    context = {"form": form, "errors": error_items(form)}
    return render(request, "studies/patient_form.html", context, status=400 if form.errors else 200)


def _wants_json(request: HttpRequest) -> bool:
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"


@role_required(*CLINICAL)
@require_http_methods(["GET", "POST"])
def upload(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    """The upload form. A refused file re-renders the form with the reason (400) and stores
    nothing. The page's script posts with XHR for a progress bar and gets JSON back."""
    tenant = request.tenant
    patients = access.caseload(tenant).order_by("family_name", "given_name", "mrn")
    if request.method == "POST":
        wait = ratelimit.upload_wait(request.user)  # before the body is read
        if wait:
            return _upload_limited(request, wait)
        form = UploadForm(request.POST, request.FILES, patients=patients)
        if form.is_valid():
            patient = form.cleaned_data["patient"]
            image = form.cleaned_data["image"]
            try:
                validated = validate_upload(image)
                earlier = services.same_file_studies(patient, hashlib.sha256(validated.data).hexdigest())
                if earlier and not form.cleaned_data["confirm_duplicate"]:
                    form.ask_to_confirm_duplicate(earlier)
                else:
                    study = services.submit_study(
                        patient, validated, original_filename=image.name, actor=request.user, request=request
                    )
            except UploadRejected as exc:
                form.add_error("image", exc.messages[0])
            if not form.errors:
                url = reverse("studies:study_detail", kwargs={"hospital_slug": tenant.hospital.slug, "pk": study.pk})
                if _wants_json(request):
                    return JsonResponse({"redirect": url, "study": study.pk}, status=201)
                messages.success(request, "The image was uploaded and is waiting for the AI second read.")
                return redirect(url)
        duplicate = "confirm_duplicate" in form.errors
        if _wants_json(request):
            return JsonResponse({"errors": error_items(form), "duplicate": duplicate}, status=409 if duplicate else 400)
        status = 409 if duplicate else 400
    else:
        form, status = _upload_form_for_link(request, patients)
    context = {"form": form, "has_patients": patients.exists(), "errors": error_items(form)}
    return render(request, "studies/upload.html", context, status=status)


@role_required(*CLINICAL)
@require_GET
def patient_search(request: TenantRequest, hospital_slug: str) -> JsonResponse:
    """The upload page's patient search: the caseload's patients matching ``q`` (name or MRN),
    ``PATIENT_SEARCH_PAGE`` at a time (``page``), as {results: [{id, label}], next_page}."""
    tenant = request.tenant
    form = SearchForm(request.GET)
    q = form.cleaned_data["q"].strip() if form.is_valid() else ""
    patients = matching(access.caseload(tenant), q).order_by("family_name", "given_name", "mrn")
    page = Paginator(patients, PATIENT_SEARCH_PAGE).get_page(request.GET.get("page"))
    response = JsonResponse(
        {
            "results": [{"id": p.pk, "label": patient_label(p)} for p in page.object_list],
            "count": page.paginator.count,
            "next_page": page.next_page_number() if page.has_next() else None,
        }
    )
    response["Cache-Control"] = "private, no-store"
    return response


UPLOAD_LIMITED = "You have uploaded many images in a short time; uploads are paused for a while."


def _upload_limited(request: HttpRequest, wait: int) -> HttpResponse:
    if _wants_json(request):
        message = f"{UPLOAD_LIMITED} Try again in {wait} seconds."
        response = JsonResponse({"errors": [{"message": message, "target": ""}], "duplicate": False}, status=429)
        response["Retry-After"] = str(wait)
        return response
    return ratelimit.too_many(request, UPLOAD_LIMITED, wait)


def _upload_form_for_link(request: HttpRequest, patients: QuerySet[Patient]) -> tuple[UploadForm, int]:
    """The empty upload form, with the patient of an ``?patient=<id>`` link chosen; a link whose id
    is not a valid id answers 400 with a message (a patient one may not see is just not chosen)."""
    wanted = request.GET.get("patient", "")
    if not wanted:
        return UploadForm(patients=patients), 200
    try:
        wanted_id = parse_id(wanted, "patient in the link")
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
        return UploadForm(patients=patients), 400
    chosen = patients.filter(pk=wanted_id).first()
    initial = {"patient": chosen.pk, "patient_search": patient_label(chosen)} if chosen else {}
    return UploadForm(initial=initial, patients=patients), 200


@role_required(*CLINICAL)
def study_detail(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant
    study = access.get_study(tenant, pk)
    audit.record("study.view", hospital=tenant.hospital, actor=request.user, obj=study, request=request)
    return render(request, "studies/study_detail.html", _study_context(request, study))


def _study_context(
    request: TenantRequest, study: Study, error_form: EnteredInErrorForm | None = None
) -> dict[str, Any]:
    diagnosis = latest_diagnosis(study)
    return {
        "study": study,
        "patient": study.patient,
        "diagnosis": diagnosis,
        "viewer": viewer_config(study, label=image_title(study)),
        "layers": viewer_layers(study, diagnosis),
        "can_mark_error": request.tenant.is_doctor
        and not study.entered_in_error
        and access.cares_for(request.user, study.patient),
        "error_form": error_form or EnteredInErrorForm(),
        "errors": error_items(error_form),
    }


@role_required(Role.DOCTOR)
@require_POST
def entered_in_error(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """Mark a study as entered in error, with a reason: it leaves the worklist and the patient's
    view; nothing is deleted."""
    tenant = request.tenant
    study = access.get_study(tenant, pk)
    form = EnteredInErrorForm(request.POST)
    if form.is_valid():
        try:
            services.mark_entered_in_error(study, request.user, reason=form.cleaned_data["reason"], request=request)
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "The study was marked as entered in error. It stays on record.")
            return redirect("studies:patient_detail", hospital_slug=hospital_slug, pk=study.patient_id)
    return render(request, "studies/study_detail.html", _study_context(request, study, error_form=form), status=400)


def _stored_values(data: bytes, *, stored_min: int) -> tuple[bytes, str]:
    return values_png(data, stored_min), "image/png"


@role_required(*CLINICAL)
def study_image(request: TenantRequest, hospital_slug: str, pk: int, rendition: str = "display") -> HttpResponse:
    """The study's image for the study page (a DICOM is shown as a windowed PNG), or with
    ``rendition="values"`` a greyscale DICOM's stored pixel values, packed losslessly for the
    viewer's window/level (``apps.studies.dicom.values_png``; 404 for images that have none)."""
    tenant = request.tenant
    study = access.get_study(tenant, pk)
    if rendition != "values":
        return serve_study_image(request, study, hospital=tenant.hospital, obj=study, action="study.view_image")
    if "stored_min" not in study.dicom_display:
        raise Http404("This image has no stored pixel values to window.")
    return serve_encrypted(
        request,
        stored_name=study.file_name,
        stored_sha256=study.file_sha256,
        what="DICOM image",
        content_type="image/png",
        filename=f"study-{study.pk}-values.png",
        inline=True,
        hospital=tenant.hospital,
        obj=study,
        action="study.view_image",
        render=partial(_stored_values, stored_min=study.dicom_display["stored_min"]),
    )


# --- Hospital admin pages --------------------------------------------------------------------


def _audit_filters(request: TenantRequest) -> tuple[AuditFilterForm, QuerySet[AuditEvent]]:
    """The filter form bound to the query string, and the hospital's events it selects (all of
    them while the form is invalid: the page shows the errors, the export refuses)."""
    tenant = request.tenant
    events = auditlog.events_of(tenant)
    actions = list(events.order_by("action").values_list("action", flat=True).distinct())
    form = AuditFilterForm(request.GET or None, hospital=tenant.hospital, actions=actions)
    if form.is_valid():
        events = auditlog.filtered(events, form.cleaned_data)
    return form, events


@role_required(Role.HOSPITAL_ADMIN)
def audit_log(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    form, events = _audit_filters(request)
    page = _page(request, events, AUDIT_PAGE_SIZE)
    query = _query_without_page(request)
    return render(
        request,
        "studies/audit_log.html",
        {"page": page, "form": form, "query": query, "filtered": form.is_bound and form.has_changed()},
        status=400 if form.errors else 200,
    )


@role_required(Role.HOSPITAL_ADMIN)
@require_GET
def audit_export(request: TenantRequest, hospital_slug: str) -> HttpResponseBase:
    """The filtered audit log as CSV, streamed. The export is itself an audit event."""
    tenant = request.tenant
    form, events = _audit_filters(request)
    if form.errors:
        return HttpResponse(
            "The filters are not valid: " + " ".join(str(m) for msgs in form.errors.values() for m in msgs),
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    filters = {k: v for k, v in request.GET.items() if k in form.fields and v}
    audit.record("audit.export", hospital=tenant.hospital, actor=request.user, request=request, filters=filters)
    response = StreamingHttpResponse(
        auditlog.csv_lines(tenant.hospital, events.order_by("id")), content_type="text/csv; charset=utf-8"
    )
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="audit-{tenant.hospital.slug}-{stamp}.csv"'
    response["Cache-Control"] = "private, no-store"
    return response


@role_required(Role.HOSPITAL_ADMIN)
def members(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    """People and roles, and the invitation form. An invitation is e-mailed; the page says the same
    whether or not the address has an account, and nobody joins until they accept."""
    tenant = request.tenant
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        email, role = form.cleaned_data["email"], form.cleaned_data["role"]
        account_services.invite(tenant.hospital, email=email, role=role, actor=request.user, request=request)
        days = settings.INVITATION_TTL_DAYS
        messages.success(
            request,
            f"An invitation to join as {Role(role).label.lower()} was sent to {email}. "
            f"It is valid for {days} days; the person appears here once they accept.",
        )
        return redirect("studies:members", hospital_slug=tenant.hospital.slug)
    rows = Membership.objects.visible_to(tenant).select_related("user").order_by("-is_active", "role", "user__email")
    page = _page(request, rows, AUDIT_PAGE_SIZE)
    paused = lockout.paused_emails([m.user.email for m in page.object_list])
    invitations = Invitation.objects.visible_to(tenant).pending().select_related("invited_by")
    context = {
        "form": form,
        "page": page,
        "query": _query_without_page(request),
        "paused": paused,
        "invitations": invitations,
        "errors": error_items(form),
    }
    return render(request, "studies/members.html", context, status=400 if form.errors else 200)


@role_required(Role.HOSPITAL_ADMIN)
@require_POST
def second_factor_policy(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    """Whether this hospital's doctors must sign in with two-step verification."""
    tenant = request.tenant
    required = request.POST.get("require_doctor_2fa") == "on"
    account_services.set_doctor_second_factor(tenant.hospital, required, actor=request.user, request=request)
    if required:
        messages.success(request, "Doctors now sign in with a code from an authenticator app too.")
    else:
        messages.success(request, "Doctors sign in with their password alone (unless they set up a code).")
    return redirect("studies:members", hospital_slug=tenant.hospital.slug)


@role_required(Role.HOSPITAL_ADMIN)
@require_POST
def invitation_revoke(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """Withdraw a pending invitation (its link stops working)."""
    tenant = request.tenant
    invitation = Invitation.objects.visible_to(tenant).pending().filter(pk=pk).first()
    if invitation is None:
        raise Http404("No such pending invitation.")
    account_services.revoke_invitation(invitation, actor=request.user, request=request)
    messages.success(request, f"The invitation of {invitation.email} is withdrawn.")
    return redirect("studies:members", hospital_slug=tenant.hospital.slug)


def _confirm(request: HttpRequest, *, question: str, consequence: str, button: str, cancel: str) -> HttpResponse:
    """The page that asks before an action takes effect: it posts the same form back with confirm=yes."""
    context = {
        "question": question,
        "consequence": consequence,
        "button": button,
        "action": request.path,
        "cancel_url": cancel,
    }
    return render(request, "studies/confirm.html", context)


@role_required(Role.HOSPITAL_ADMIN)
@require_POST
def member_deactivate(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant
    membership = Membership.objects.visible_to(tenant).filter(pk=pk).select_related("user").first()
    if membership is None:
        raise Http404("No such membership.")
    role, name = membership.get_role_display().lower(), membership.user.display_name
    if request.POST.get("confirm") != "yes":
        return _confirm(
            request,
            question=f"Remove the {role} role of {name}?",
            consequence=f"{name} can no longer work here as {role}; open pages and sockets end. "
            "The role can be given again later.",
            button="Remove the role",
            cancel=reverse("studies:members", args=[hospital_slug]),
        )
    try:
        account_services.deactivate_member(membership, actor=request.user, request=request)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(
            request,
            f"{membership.user.display_name}: role {membership.get_role_display().lower()} removed.",
        )
    return redirect("studies:members", hospital_slug=tenant.hospital.slug)


@role_required(Role.HOSPITAL_ADMIN)
@require_POST
def member_unlock(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    """Lift a member's sign-in pause (after too many failed attempts); audited."""
    tenant = request.tenant
    membership = Membership.objects.visible_to(tenant).filter(pk=pk).select_related("user").first()
    if membership is None:
        raise Http404("No such membership.")
    lockout.unlock(membership.user.email, hospital=tenant.hospital, actor=request.user, request=request)
    messages.success(request, f"{membership.user.display_name} can sign in again.")
    return redirect("studies:members", hospital_slug=tenant.hospital.slug)


@role_required(Role.HOSPITAL_ADMIN)
def assignments(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    tenant = request.tenant
    patients = Patient.objects.visible_to(tenant).order_by("family_name", "given_name", "mrn")
    form = AssignmentForm(request.POST or None, hospital=tenant.hospital, patients=patients)
    if request.method == "POST" and form.is_valid():
        patient, doctor = form.cleaned_data["patient"], form.cleaned_data["doctor"]
        try:
            services.assign_doctor(patient, doctor, actor=request.user, request=request)
        except ValidationError as exc:
            form.add_error(None, exc.messages[0])
        else:
            messages.success(request, f"{patient.full_name} is now on the caseload of {doctor.display_name}.")
            return redirect("studies:assignments", hospital_slug=tenant.hospital.slug)
    rows = (
        CareAssignment.objects.visible_to(tenant)
        .select_related("patient", "doctor", "assigned_by")
        .order_by("patient__family_name", "patient__given_name", "doctor__email")
    )
    page = _page(request, rows, AUDIT_PAGE_SIZE)
    context = {"form": form, "page": page, "errors": error_items(form)}
    return render(request, "studies/assignments.html", context, status=400 if form.errors else 200)


@role_required(Role.HOSPITAL_ADMIN)
@require_POST
def assignment_remove(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant
    assignment = access.get_care_assignment(tenant, pk)
    patient, doctor = assignment.patient.full_name, assignment.doctor.display_name
    if request.POST.get("confirm") != "yes":
        return _confirm(
            request,
            question=f"Take {patient} off the caseload of {doctor}?",
            consequence=f"{doctor} will no longer see {patient}'s studies and reports, and their conversation "
            "closes. The assignment can be made again later.",
            button="Unassign",
            cancel=reverse("studies:assignments", args=[hospital_slug]),
        )
    services.unassign_doctor(assignment.patient, assignment.doctor, actor=request.user, request=request)
    messages.success(
        request, f"{assignment.patient.full_name} was taken off the caseload of {assignment.doctor.display_name}."
    )
    return redirect("studies:assignments", hospital_slug=tenant.hospital.slug)
