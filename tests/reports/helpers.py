"""Helpers shared by the reports tests and the route table (tests/routes/reports.py)."""

from __future__ import annotations

from django_scopes import scopes_disabled

from apps.reports import services
from tests.diagnosis.helpers import heatmap_png


def write_report(
    study, doctor, *, findings="Clear lung fields.", impression="No acute disease.", final_label="normal", sign=False
):
    """A draft (or signed) report on ``study`` by ``doctor``, made through the services."""
    with scopes_disabled():
        report = services.start_report(study, doctor)
        services.save_draft(report, doctor, findings=findings, impression=impression, final_label=final_label)
        if sign:
            services.sign_report(report, doctor)
        return report


def _overlay_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


def make_diagnosis(study, *, refused=False, modality_warning="", refusal_code="", indeterminate=False):
    """A stored AI read of ``study`` (rows only: the networks have their own tests).
    ``indeterminate``: the specialist could not choose between bacterial and viral pneumonia (its
    top class is bacterial, 49%), and the heatmap was not focal (no ROI box)."""
    from apps.diagnosis.models import Diagnosis, ModelVersion
    from apps.studies.storage import store_encrypted

    with scopes_disabled():
        router, _ = ModelVersion.objects.get_or_create(
            task="router",
            version="reports-test",
            defaults={
                "weights_sha256": "a" * 64,
                "artifact_path": "router/reports-test",
                "labels": ["chest_xray", "brain_mri", "unsupported"],
            },
        )
        chest, _ = ModelVersion.objects.get_or_create(
            task="chest",
            version="reports-test",
            defaults={
                "weights_sha256": "b" * 64,
                "artifact_path": "chest/reports-test",
                "labels": ["normal", "bacterial_pneumonia", "viral_pneumonia"],
            },
        )
        if refused:
            return Diagnosis.objects.create(
                hospital_id=study.hospital_id,
                study=study,
                route="unsupported",
                refused=True,
                refusal_code=refusal_code,
                refusal_reason="it looks like a photograph, not a medical image",
                router_version=router,
                router_sha256=router.weights_sha256,
                versions_key=f"{router.pk}:-",
            )
        overlay = store_encrypted(_overlay_png(), folder=f"diagnoses/h{study.hospital_id}", suffix=".png")
        heat = store_encrypted(heatmap_png(), folder=f"diagnoses/h{study.hospital_id}", suffix=".png")
        return Diagnosis.objects.create(
            hospital_id=study.hospital_id,
            study=study,
            route="chest_xray",
            task="chest",
            label="bacterial_pneumonia" if indeterminate else "viral_pneumonia",
            probabilities=(
                {"normal": 0.04, "bacterial_pneumonia": 0.49, "viral_pneumonia": 0.47}
                if indeterminate
                else {"normal": 0.1, "bacterial_pneumonia": 0.2, "viral_pneumonia": 0.7}
            ),
            indeterminate=indeterminate,
            candidates=["bacterial_pneumonia", "viral_pneumonia"] if indeterminate else [],
            modality_warning=modality_warning,
            overlay_name=overlay.name,
            overlay_sha256=overlay.sha256,
            overlay_key_id=overlay.key_id,
            heatmap_name=heat.name,
            heatmap_sha256=heat.sha256,
            heatmap_key_id=heat.key_id,
            roi_box=None if indeterminate else [8, 16, 40, 48],
            router_version=router,
            router_sha256=router.weights_sha256,
            specialist_version=chest,
            specialist_sha256=chest.weights_sha256,
            versions_key=f"{router.pk}:{chest.pk}",
        )


def doctor_for(patient, email="xavier@st-mary.example", name="Dr Xavier Xu"):
    """A doctor of the patient's hospital assigned to ``patient`` (created if needed)."""
    from apps.accounts.models import Membership, Role
    from apps.studies.services import assign_doctor

    from ..factories import UserFactory

    with scopes_disabled():
        doctor = UserFactory(email=email, full_name=name)
        Membership.objects.get_or_create(user=doctor, hospital=patient.hospital, role=Role.DOCTOR)
        assign_doctor(patient, doctor)
    return doctor


def signed_report(patient, doctor, *, with_pdf=True, **fields):
    """A signed report on a new study of ``patient`` (with its PDF rendered, by default)."""
    from ..factories import make_study

    with scopes_disabled():
        study = make_study(patient, doctor)
    report = write_report(study, doctor, sign=True, **fields)
    if with_pdf:
        with scopes_disabled():
            report = services.render_report_pdf_now(report.pk)
    return report
