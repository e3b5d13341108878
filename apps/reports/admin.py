"""Admin for reports: read-only and hospital-scoped. Reports are written, signed and amended
only through the review screen (``services``), never edited here; the PDF is downloaded through
the audited ``reports:pdf`` view."""

from __future__ import annotations

from django.contrib import admin

from apps.accounts.admin import ReadOnlyAdminMixin, TenantOwnedAdmin

from .models import Report


@admin.register(Report)
class ReportAdmin(ReadOnlyAdminMixin, TenantOwnedAdmin):
    hospital_admin_can = frozenset({"view"})
    audited_as = "report"
    list_display = ("id", "hospital", "patient", "study", "version", "status", "signed_by", "signed_at", "pdf_status")
    list_filter = ("hospital", "status", "pdf_status")
    search_fields = ("patient__mrn", "patient__family_name", "study__id")
    list_select_related = ("hospital", "patient", "study", "signed_by")
    fields = (
        "hospital",
        "patient",
        "study",
        "version",
        "supersedes",
        "status",
        "author",
        "signed_by",
        "signed_at",
        "final_label",
        "impression",
        "findings",
        "ai_task",
        "ai_label",
        "ai_confidence",
        "ai_model_version",
        "ai_refused",
        "ai_note",
        "pdf_status",
        "pdf_sha256",
        "pdf_key_id",
        "pdf_size",
        "pdf_rendered_at",
        "created_at",
        "updated_at",
    )
    readonly_fields = fields
