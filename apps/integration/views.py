"""The hospital admin's integration pages: integration credentials (create, list, revoke) and the
unmatched queue (studies whose Patient ID matched no patient here: link or create the patient)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts import audit
from apps.accounts.models import Role
from apps.accounts.tenancy import TenantRequest, role_required
from apps.studies.models import Patient

from . import access, services
from . import credentials as credential_services
from .forms import CredentialForm, LinkPatientForm, NewPatientForm, initial_patient_fields


@role_required(Role.HOSPITAL_ADMIN)
@require_http_methods(["GET", "POST"])
def credentials(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    tenant = request.tenant
    form = CredentialForm(request.POST or None)
    issued = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                issued = credential_services.create_credential(
                    tenant.hospital, name=form.cleaned_data["name"], actor=request.user, request=request
                )
            except ValidationError as exc:
                form.add_error("name", exc.messages[0])
            else:
                form = CredentialForm()
                status = 201
        if form.errors:
            status = 400
    context = {
        "form": form,
        "issued": issued,
        "rows": access.credentials(tenant).select_related("created_by", "revoked_by"),
        "stow_url": request.build_absolute_uri(
            reverse("dicomweb:studies", kwargs={"hospital_slug": tenant.hospital.slug})
        ),
        "dicomweb_root": request.build_absolute_uri(f"/dicomweb/h/{tenant.hospital.slug}/"),
        "unmatched_count": access.unmatched_studies(tenant).count(),
    }
    response = render(request, "integration/credentials.html", context, status=status)
    response["Cache-Control"] = "no-store"  # the page may show a secret once
    return response


@role_required(Role.HOSPITAL_ADMIN)
@require_POST
def credential_revoke(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant
    credential = access.get_credential(tenant, pk)
    if credential_services.revoke_credential(credential, actor=request.user, request=request):
        messages.success(request, f"“{credential.name}” was revoked: it no longer opens anything.")
    else:
        messages.info(request, f"“{credential.name}” was already revoked.")
    return redirect("integration:credentials", hospital_slug=tenant.hospital.slug)


@role_required(Role.HOSPITAL_ADMIN)
def unmatched(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    tenant = request.tenant
    rows = access.unmatched_studies(tenant).order_by("received_at", "pk").prefetch_related("instances")
    audit.record("integration.unmatched_view", hospital=tenant.hospital, actor=request.user, request=request)
    return render(request, "integration/unmatched.html", {"rows": rows})


@role_required(Role.HOSPITAL_ADMIN)
@require_http_methods(["GET", "POST"])
def unmatched_detail(request: TenantRequest, hospital_slug: str, pk: int) -> HttpResponse:
    tenant = request.tenant
    dicom_study = access.get_unmatched_study(tenant, pk)
    patients = Patient.objects.visible_to(tenant).order_by("family_name", "given_name", "mrn")
    action = request.POST.get("action", "")
    link_form = LinkPatientForm(request.POST if action == "link" else None, patients=patients)
    new_form = NewPatientForm(
        request.POST if action == "create" else None,
        hospital=tenant.hospital,
        initial=initial_patient_fields(dicom_study),
    )
    status = 200
    if request.method == "POST":
        try:
            if action == "link" and link_form.is_valid():
                patient = link_form.cleaned_data["patient"]
                services.link_unmatched_study(dicom_study, patient, actor=request.user, request=request)
                messages.success(request, f"The study was filed under {patient.full_name} and sent for the AI read.")
                return redirect("integration:unmatched", hospital_slug=tenant.hospital.slug)
            if action == "create" and new_form.is_valid():
                patient = services.create_patient_for_unmatched_study(
                    dicom_study, actor=request.user, request=request, **new_form.cleaned_data
                )
                messages.success(
                    request,
                    f"{patient.full_name} was added and the study filed under them. "
                    "Assign a doctor so that it reaches a worklist.",
                )
                return redirect("integration:unmatched", hospital_slug=tenant.hospital.slug)
            if action == "discard":
                services.discard_unmatched_study(
                    dicom_study, reason=request.POST.get("reason", ""), actor=request.user, request=request
                )
                messages.success(request, "The study was discarded; the audit log keeps what was sent and why.")
                return redirect("integration:unmatched", hospital_slug=tenant.hospital.slug)
            if action not in ("link", "create", "discard"):
                messages.error(
                    request, "Choose whether to link the study to a patient, create the patient, or discard the study."
                )
        except ValidationError as exc:
            messages.error(request, exc.messages[0])
        status = 400
    audit.record(
        "integration.unmatched_view", hospital=tenant.hospital, actor=request.user, obj=dicom_study, request=request
    )
    context = {
        "dicom_study": dicom_study,
        "instances": dicom_study.instances.all(),
        "link_form": link_form,
        "new_form": new_form,
        "has_patients": patients.exists(),
    }
    return render(request, "integration/unmatched_detail.html", context, status=status)
