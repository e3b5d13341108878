"""Django admin for patients, caseload assignments and studies, scoped per hospital
(``TenantOwnedAdmin``: rows come from each model's ``visible_to``). Assignments go through the
services so the audit trail and open chats stay right; study files are never edited here."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts import audit
from apps.accounts.admin import TenantOwnedAdmin, admin_hospital_ids
from apps.accounts.models import Membership, Role

from . import services
from .access import is_active_doctor
from .models import CareAssignment, Patient, Study


class CareAssignmentInline(admin.TabularInline):
    model = CareAssignment
    extra = 0
    fields = ("doctor", "assigned_by", "created_at")
    readonly_fields = ("doctor", "assigned_by", "created_at")
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # use the Assignments admin or page, which go through the services


@admin.register(Patient)
class PatientAdmin(TenantOwnedAdmin):
    """Patient records. Opening one or the list is audited; so is a deletion (possible only for a
    record without studies or reports, which protect it), with who the patient was."""

    audited_as = "patient"
    list_display = ("mrn", "family_name", "given_name", "birth_date", "sex", "hospital", "has_login", "created_at")
    list_filter = ("hospital", "sex")
    search_fields = ("mrn", "family_name", "given_name")
    list_select_related = ("hospital",)
    readonly_fields = ("created_at",)
    inlines = [CareAssignmentInline]

    @admin.display(boolean=True, description="Patient login")
    def has_login(self, obj: Patient) -> bool:
        return obj.user_id is not None

    def save_model(self, request: HttpRequest, obj: Patient, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit.record(
            "patient.change" if change else "patient.create",
            hospital=obj.hospital,
            actor=request.user,
            obj=obj,
            request=request,
            via="admin",
        )

    def delete_model(self, request: HttpRequest, obj: Patient) -> None:
        with transaction.atomic():
            audit.record(
                "patient.delete", hospital=obj.hospital, actor=request.user, obj=obj, request=request, via="admin"
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Patient]) -> None:
        with transaction.atomic():
            for obj in queryset.select_related("hospital"):
                self.delete_model(request, obj)


class CareAssignmentForm(forms.ModelForm):
    """Checks that the doctor is a doctor of the patient's hospital. Its fields are added by the
    admin at request time (inside the hospital scope): building them at import would query."""

    class Meta:
        model = CareAssignment
        fields: tuple[str, ...] = ()

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        patient, doctor = data.get("patient"), data.get("doctor")
        if patient and doctor:
            if not is_active_doctor(doctor, patient.hospital_id):
                self.add_error("doctor", "Only doctors of the patient's hospital can be assigned.")
        return data


@admin.register(CareAssignment)
class CareAssignmentAdmin(TenantOwnedAdmin):
    """Assigning and unassigning run ``services.assign_doctor`` / ``unassign_doctor`` (audit, open
    chats closed); an assignment is never edited in place."""

    hospital_admin_can = frozenset({"view", "add", "delete"})
    list_display = ("patient", "doctor", "hospital", "assigned_by", "created_at")
    list_filter = ("hospital",)
    search_fields = ("patient__mrn", "patient__family_name", "doctor__email", "doctor__full_name")
    list_select_related = ("patient", "doctor", "hospital", "assigned_by")
    form = CareAssignmentForm
    fields = ("patient", "doctor")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if db_field.name == "doctor":
            # Only doctors: the hospital's people also include its patients and its admins.
            doctors = Membership.objects.filter(role=Role.DOCTOR, is_active=True, user__is_active=True)
            if not self.is_platform_admin(request):
                doctors = doctors.filter(hospital__in=admin_hospital_ids(request))
            field.queryset = field.queryset.filter(pk__in=doctors.values("user_id"))
        return field

    def save_model(self, request: HttpRequest, obj: CareAssignment, form: Any, change: bool) -> None:
        assignment = services.assign_doctor(obj.patient, obj.doctor, actor=request.user, request=request)
        obj.pk, obj.hospital_id = assignment.pk, assignment.hospital_id

    def delete_model(self, request: HttpRequest, obj: CareAssignment) -> None:
        services.unassign_doctor(obj.patient, obj.doctor, actor=request.user, request=request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CareAssignment]) -> None:
        for obj in queryset.select_related("patient", "doctor"):
            self.delete_model(request, obj)


@admin.register(Study)
class StudyAdmin(TenantOwnedAdmin):
    """Studies are created by uploads only. The stored file's fields are read-only everywhere."""

    hospital_admin_can = frozenset({"view", "change"})
    audited_as = "study"
    list_display = ("id", "patient", "hospital", "status", "modality", "source_format", "uploaded_by", "created_at")
    list_filter = ("hospital", "status", "modality", "source_format")
    search_fields = ("patient__mrn", "patient__family_name", "original_filename", "file_sha256")
    list_select_related = ("patient", "hospital", "uploaded_by")
    date_hierarchy = "created_at"
    readonly_fields = (
        "hospital",
        "patient",
        "uploaded_by",
        "created_at",
        "updated_at",
        "source_format",
        "original_filename",
        "width",
        "height",
        "dicom_modality",
        "file_name",
        "file_sha256",
        "file_key_id",
        "file_size",
    )
    fields = ("status", "status_message", "modality", *readonly_fields)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting a study would orphan its encrypted file and break the audit trail.
        return False

    def save_model(self, request: HttpRequest, obj: Study, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit.record(
            "study.change",
            hospital=obj.hospital,
            actor=request.user,
            obj=obj,
            request=request,
            via="admin",
            changed=list(form.changed_data),
        )
