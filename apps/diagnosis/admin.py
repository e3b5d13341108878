"""Admin for the model registry (platform admins) and the AI reads and feedback (read-only,
hospital-scoped: a hospital admin sees only their own hospital's rows)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from apps.accounts import audit
from apps.accounts.admin import HospitalScopedAdmin, ReadOnlyAdminMixin, TenantOwnedAdmin

from .models import DeploymentChange, Diagnosis, Feedback, ModelDeployment, ModelVersion
from .registry import activate_version


class DeploymentChangeInline(admin.TabularInline):
    """Who moved this version in which hospital (shadow → A/B → active, rollbacks)."""

    model = DeploymentChange
    fields = ("created_at", "hospital", "from_stage", "from_percent", "to_stage", "to_percent", "actor", "note")
    readonly_fields = fields
    ordering = ("-created_at",)
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """The registry. Only platform admins (superusers) see it; only activation and the A/B
    rollout share can be changed — a version's weights and card are what was trained."""

    list_display = ("task", "version", "is_active", "rollout_percent", "accuracy_display", "short_sha", "created_at")
    list_filter = ("task", "is_active")
    search_fields = ("version", "weights_sha256")
    ordering = ("task", "-created_at")
    fields = (
        "task",
        "version",
        "is_active",
        "rollout_percent",
        "weights_sha256",
        "artifact_path",
        "labels",
        "thresholds",
        "temperature",
        "metrics",
        "created_at",
    )
    readonly_fields = (
        "task",
        "version",
        "weights_sha256",
        "artifact_path",
        "labels",
        "thresholds",
        "temperature",
        "metrics",
        "created_at",
    )
    actions = ["make_active"]
    inlines = [DeploymentChangeInline]

    @admin.display(description="test accuracy")
    def accuracy_display(self, obj: ModelVersion) -> str:
        return f"{obj.accuracy:.3f}" if obj.accuracy is not None else "—"

    @admin.display(description="SHA-256")
    def short_sha(self, obj: ModelVersion) -> str:
        return obj.short_sha

    def has_module_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_superuser)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(request.user.is_superuser)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # versions come from artifacts: manage.py train_model / sync_models

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # diagnoses reference the versions they used

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: Any, change: bool) -> None:
        activate = obj.is_active and not ModelVersion.objects.filter(pk=obj.pk, is_active=True).exists()
        if activate:
            obj.is_active = False  # saved inactive first; activate_version swaps atomically
        super().save_model(request, obj, form, change)
        if activate:
            activate_version(obj)
        audit.record(
            "model.activate" if activate else "model.change",
            hospital=None,
            actor=request.user,
            obj=obj,
            request=request,
            changed=list(form.changed_data),
            rollout_percent=obj.rollout_percent,
        )

    @admin.action(description="Make the selected version active for its task")
    def make_active(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        chosen: dict[str, ModelVersion] = {}
        for mv in queryset:
            chosen[mv.task] = mv
        if len(chosen) != queryset.count():
            self.message_user(request, "Choose at most one version per task.", messages.ERROR)
            return
        for mv in chosen.values():
            activate_version(mv)
            audit.record("model.activate", hospital=None, actor=request.user, obj=mv, request=request)
        self.message_user(request, f"Activated: {', '.join(str(mv) for mv in chosen.values())}.")


class ScopedReadOnlyAdmin(ReadOnlyAdminMixin, TenantOwnedAdmin):
    """AI reads and feedback, read-only: platform admins see every hospital, hospital admins the
    rows ``visible_to`` them."""

    hospital_admin_can = frozenset({"view"})


class HospitalReadOnlyAdmin(ReadOnlyAdminMixin, HospitalScopedAdmin):
    """Hospital-level settings and their history (about no patient), read-only."""

    hospital_admin_can = frozenset({"view"})


@admin.register(Diagnosis)
class DiagnosisAdmin(ScopedReadOnlyAdmin):
    list_display = (
        "id",
        "hospital",
        "study",
        "route",
        "refused",
        "refusal_code",
        "indeterminate",
        "label",
        "specialist_version",
        "created_at",
    )
    list_filter = ("hospital", "route", "refused", "refusal_code", "indeterminate", "task")
    search_fields = ("label", "study__id")
    list_select_related = ("hospital", "study__patient", "specialist_version")
    fields = (
        "hospital",
        "study",
        "route",
        "route_probabilities",
        "refused",
        "refusal_code",
        "refusal_reason",
        "modality_warning",
        "task",
        "label",
        "indeterminate",
        "candidates",
        "probabilities",
        "ood",
        "roi_box",
        "router_version",
        "router_sha256",
        "specialist_version",
        "specialist_sha256",
        "timings_ms",
        "overlay_sha256",
        "created_at",
    )
    readonly_fields = fields


@admin.register(Feedback)
class FeedbackAdmin(ScopedReadOnlyAdmin):
    list_display = ("id", "hospital", "diagnosis", "doctor", "action", "corrected_label", "created_at")
    list_filter = ("hospital", "action")
    list_select_related = ("hospital", "diagnosis", "doctor")
    fields = ("hospital", "diagnosis", "doctor", "action", "corrected_label", "comment", "created_at")
    readonly_fields = fields


@admin.register(ModelDeployment)
class ModelDeploymentAdmin(HospitalReadOnlyAdmin):
    """Which versions each hospital is trying; changed on the hospital's models page only."""

    list_display = ("hospital", "task", "model_version", "stage", "rollout_percent", "updated_at")
    list_filter = ("hospital", "task", "stage")
    list_select_related = ("hospital", "model_version")
    fields = ("hospital", "task", "model_version", "stage", "rollout_percent", "created_at", "updated_at")
    readonly_fields = fields


@admin.register(DeploymentChange)
class DeploymentChangeAdmin(HospitalReadOnlyAdmin):
    """The history of who changed what: every shadow start, A/B share, activation and rollback."""

    list_display = ("created_at", "hospital", "model_version", "from_stage", "to_stage", "to_percent", "actor", "note")
    list_filter = ("hospital", "to_stage")
    list_select_related = ("hospital", "model_version", "actor")
    fields = (
        "created_at",
        "hospital",
        "model_version",
        "from_stage",
        "from_percent",
        "to_stage",
        "to_percent",
        "actor",
        "note",
    )
    readonly_fields = fields
