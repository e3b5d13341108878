"""Admin for the integration: read-only and hospital-scoped. Credentials are created and revoked,
and unmatched studies resolved, on the hospital admin's PACS pages (``services``), never here."""

from __future__ import annotations

from django.contrib import admin

from apps.accounts.admin import HospitalScopedAdmin, ReadOnlyAdminMixin

from .models import DicomInstance, DicomStudy, IntegrationCredential


@admin.register(IntegrationCredential)
class IntegrationCredentialAdmin(ReadOnlyAdminMixin, HospitalScopedAdmin):
    hospital_admin_can = frozenset({"view"})
    list_display = ("name", "key_id", "hospital", "created_at", "last_used_at", "revoked_at")
    list_filter = ("hospital",)
    list_select_related = ("hospital",)
    fields = ("hospital", "name", "key_id", "created_by", "created_at", "last_used_at", "revoked_at", "revoked_by")


@admin.register(DicomStudy)
class DicomStudyAdmin(ReadOnlyAdminMixin, HospitalScopedAdmin):
    hospital_admin_can = frozenset({"view"})
    list_display = ("study_instance_uid", "hospital", "patient", "sent_patient_id", "received_at", "matched_at")
    list_filter = ("hospital",)
    search_fields = ("study_instance_uid", "sent_patient_id", "accession_number")
    list_select_related = ("hospital", "patient")


@admin.register(DicomInstance)
class DicomInstanceAdmin(ReadOnlyAdminMixin, HospitalScopedAdmin):
    hospital_admin_can = frozenset({"view"})
    list_display = ("sop_instance_uid", "hospital", "dicom_study", "modality", "study", "received_at")
    list_filter = ("hospital",)
    search_fields = ("sop_instance_uid", "series_instance_uid")
    list_select_related = ("hospital", "dicom_study", "study")
    exclude = ("held_file_name", "held_file_sha256", "held_file_key_id")
