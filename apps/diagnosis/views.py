"""The AI read's downloads (the Grad-CAM overlay and heatmap images, the study's status as JSON) and the
models dashboard.

The result itself is shown on the study page (``templates/diagnosis/_result.html``, included by
``studies:study_detail``). The downloads are for the clinicians who see the study; the models
dashboard for the hospital's admins, and read-only for its doctors.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts import audit
from apps.accounts.models import Role
from apps.accounts.tenancy import TenantRequest, role_required
from apps.studies.downloads import serve_encrypted

from . import access, dashboard, deployments, drift
from .forms import AcknowledgeAlertForm, DeploymentActionForm
from .models import DriftAlert, ModelVersion
from .services import diagnosis_summary

CLINICAL = (Role.DOCTOR, Role.HOSPITAL_ADMIN)


#: The two images of an AI read: the heatmap blended over the image (the PDF's), and the map alone
#: (the viewer's layer, blended in the browser): stored-name and sha256 fields, file name.
LAYERS = {
    "overlay": ("overlay_name", "overlay_sha256", "heatmap"),
    "heatmap": ("heatmap_name", "heatmap_sha256", "heatmap-layer"),
}


@role_required(*CLINICAL)
def overlay(request: TenantRequest, hospital_slug: str, study_pk: int, layer: str = "overlay") -> HttpResponse:
    """A Grad-CAM image of the study's latest AI read (decrypted, audited): the blended overlay,
    or with ``layer="heatmap"`` the greyscale map alone."""
    tenant = request.tenant
    diagnosis = access.get_diagnosis(tenant, study_pk)
    name_field, sha_field, filename = LAYERS[layer]
    if not getattr(diagnosis, name_field):
        raise Http404("This AI read has no heatmap.")
    return serve_encrypted(
        request,
        stored_name=getattr(diagnosis, name_field),
        stored_sha256=getattr(diagnosis, sha_field),
        what="heatmap",
        content_type="image/png",
        filename=f"study-{study_pk}-{filename}.png",
        inline=True,
        hospital=tenant.hospital,
        obj=diagnosis,
        action="diagnosis.view_overlay",
        study=study_pk,
        layer=layer,
    )


@role_required(*CLINICAL)
def study_status(request: TenantRequest, hospital_slug: str, study_pk: int) -> JsonResponse:
    """Status, message and AI summary of a study: what a page that reconnects fetches to catch up."""
    tenant = request.tenant
    study, diagnosis = access.get_study_and_diagnosis(tenant, study_pk)
    audit.record("study.view_status", hospital=tenant.hospital, actor=request.user, obj=study, request=request)
    response = JsonResponse(
        {
            "study": study.pk,
            "status": study.status,
            "status_display": study.get_status_display(),
            "message": study.status_message,
            "modality": study.modality,
            "finished": study.is_finished,
            "updated_at": study.updated_at.isoformat(),
            "diagnosis": diagnosis_summary(study, diagnosis),
        }
    )
    response["Cache-Control"] = "private, no-store"
    return response


@role_required(*CLINICAL)
def models_dashboard(request: TenantRequest, hospital_slug: str) -> HttpResponse:
    """How each model version does in this hospital, what it is trying, and drift alerts."""
    tenant = request.tenant
    return render(request, "diagnosis/models.html", dashboard.build(tenant))


@role_required(Role.HOSPITAL_ADMIN)
def deployment_action(request: TenantRequest, hospital_slug: str, version_pk: str, action: str) -> HttpResponse:
    """GET: what the step changes, and a confirmation form; POST: take the step."""
    tenant = request.tenant
    mv = get_object_or_404(ModelVersion, pk=int(version_pk))
    form = DeploymentActionForm(request.POST or None, action=action)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                deployments.perform(
                    action,
                    tenant.hospital,
                    mv,
                    request.user,
                    percent=form.cleaned_data.get("percent"),
                    note=form.cleaned_data["note"],
                    request=request,
                )
            except ValidationError as exc:
                form.add_error(None, exc.messages[0])
            else:
                messages.success(request, f"{deployments.ACTIONS[action][0]}: done for {mv.version}.")
                return redirect("diagnosis:models", hospital_slug=tenant.hospital.slug)
        status = 400
    context = {
        "form": form,
        "action": action,
        "title": deployments.ACTIONS[action][0],
        "version": mv,
        "deployment": deployments.deployment_of(tenant.hospital, mv),
        "live": deployments.live_version(tenant.hospital, mv.task),
    }
    return render(request, "diagnosis/deployment_confirm.html", context, status=status)


@require_POST
@role_required(Role.HOSPITAL_ADMIN)
def acknowledge_alert(request: TenantRequest, hospital_slug: str, alert_pk: int) -> HttpResponse:
    """A hospital admin has looked into a drift alert: it leaves the dashboard (audited)."""
    tenant = request.tenant
    alert = get_object_or_404(DriftAlert, pk=alert_pk, hospital=tenant.hospital)
    form = AcknowledgeAlertForm(request.POST)
    if not form.is_valid():
        return HttpResponse("The note is too long (500 characters at most).", status=400, content_type="text/plain")
    drift.acknowledge(alert, request.user, form.cleaned_data["note"], request=request)
    messages.success(request, "Alert acknowledged.")
    return redirect("diagnosis:models", hospital_slug=tenant.hospital.slug)
