"""Django admin for people, hospitals, memberships and the audit trail, and the mixin every
app's admin uses so that a hospital admin only ever sees their own hospital's rows."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from functools import reduce
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import forms as auth_forms
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse

from . import audit, services
from .models import AuditEvent, Hospital, Membership, Role, User
from .signals import announce_access_change
from .tenancy import Tenant, hospitals_administered_by


def admin_hospital_ids(request: HttpRequest) -> list[int]:
    """Hospitals the staff user of ``request`` administers (memoised on the request)."""
    cached = getattr(request, "_admin_hospital_ids", None)
    if cached is None:
        cached = hospitals_administered_by(request.user)
        request._admin_hospital_ids = cached  # type: ignore[attr-defined]  # memoised on the request
    return cached


class HospitalScopedAdmin(admin.ModelAdmin):
    """ModelAdmin base for every tenant-owned model. Platform admins (superusers) see everything;
    a *hospital admin* (``is_staff`` + an active ``hospital_admin`` Membership) sees, edits and
    chooses only rows of the hospitals they administer, without needing Django model permissions.

    Use it in any app::

        from apps.accounts.admin import HospitalScopedAdmin

        @admin.register(Report)
        class ReportAdmin(HospitalScopedAdmin):
            hospital_lookup = "hospital"      # ORM path from the model to its Hospital
            list_display = (...)
            # hospital_admin_can = {"view", "change"}   # what hospital admins may do

    What it does, on top of the django-scopes scope the middleware already activates on /admin/:

    * ``get_queryset`` filters on ``<hospital_lookup>__in`` their hospitals (also for models
      without a ScopedManager, such as Membership);
    * foreign-key and many-to-many choices are limited to their hospitals: Hospital itself,
      any model with a ``hospital`` field, and users who are members of those hospitals;
    * ``has_*_permission`` answers from the membership (``hospital_admin_can``), checking the
      object's hospital too; an object outside their hospitals is a 404, like everywhere else;
    * the ``hospital`` list filter is dropped for them (it would list every hospital's name).
    """

    #: ORM path from this model to its Hospital ("pk" for Hospital itself).
    hospital_lookup: str = "hospital"
    #: What a hospital admin may do here: a subset of {"view", "add", "change", "delete"}.
    hospital_admin_can: frozenset[str] | set[str] = frozenset({"view", "add", "change", "delete"})
    #: For patient data: the audit noun, so that opening a row writes ``<noun>.view`` and the
    #: list ``<noun>.list`` (``via="admin"``). The model must have a ``hospital`` field.
    audited_as: str | None = None

    # --- rows -------------------------------------------------------------------------------
    def is_platform_admin(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request)
        if self.is_platform_admin(request):
            return qs
        qs = qs.filter(**{f"{self.hospital_lookup}__in": admin_hospital_ids(request)})
        return qs.distinct() if "__" in self.hospital_lookup else qs

    # --- permissions ------------------------------------------------------------------------
    def _hospital_admin_may(self, request: HttpRequest, action: str, obj: models.Model | None) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff) or action not in self.hospital_admin_can:
            return False
        ids = admin_hospital_ids(request)
        if not ids:
            return False
        if obj is None:
            return True
        # The object must be one of the rows this admin may list (same filter, one query).
        return self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_module_permission(self, request: HttpRequest) -> bool:
        if self.is_platform_admin(request):
            return super().has_module_permission(request)
        return self._hospital_admin_may(request, "view", None)

    def has_view_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        if self.is_platform_admin(request):
            return super().has_view_permission(request, obj)
        return self._hospital_admin_may(request, "view", obj) or self._hospital_admin_may(request, "change", obj)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        if self.is_platform_admin(request):
            return super().has_add_permission(request, *args)
        return self._hospital_admin_may(request, "add", None)

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        if self.is_platform_admin(request):
            return super().has_change_permission(request, obj)
        return self._hospital_admin_may(request, "change", obj)

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        if self.is_platform_admin(request):
            return super().has_delete_permission(request, obj)
        return self._hospital_admin_may(request, "delete", obj)

    # --- choices ----------------------------------------------------------------------------
    def _limit_choices(self, request: HttpRequest, model: type[models.Model], qs: QuerySet[Any]) -> QuerySet[Any]:
        if self.is_platform_admin(request):
            return qs
        ids = admin_hospital_ids(request)
        if model is Hospital:
            return qs.filter(pk__in=ids)
        if issubclass(model, User):
            return qs.filter(memberships__hospital__in=ids).distinct()
        if any(f.name == "hospital" for f in model._meta.get_fields()):
            return qs.filter(hospital__in=ids)
        return qs

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_foreignkey(db_field, request, **kwargs)
        if field is not None and hasattr(field, "queryset") and field.queryset is not None:
            field.queryset = self._limit_choices(request, db_field.related_model, field.queryset)
        return field

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_manytomany(db_field, request, **kwargs)
        if field is not None and hasattr(field, "queryset") and field.queryset is not None:
            field.queryset = self._limit_choices(request, db_field.related_model, field.queryset)
        return field

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = super().get_list_filter(request)
        if self.is_platform_admin(request):
            return filters

        def names_a_hospital(entry: Any) -> bool:
            name = entry[0] if isinstance(entry, (tuple, list)) else entry
            return isinstance(name, str) and (name == "hospital" or name.endswith("__hospital"))

        return [f for f in filters if not names_a_hospital(f)]

    # --- 404 for objects outside their hospitals --------------------------------------------
    def _require_object(self, request: HttpRequest, object_id: str | None) -> models.Model | None:
        obj = self.get_object(request, unquote(object_id)) if object_id else None
        if object_id and obj is None:
            raise Http404("No such object.")
        return obj

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        obj = self._require_object(request, object_id)
        response = super().change_view(request, object_id, form_url, extra_context)
        if self.audited_as and request.method == "GET" and response.status_code == 200:
            audit.record(
                f"{self.audited_as}.view",
                hospital=obj.hospital,  # type: ignore[union-attr]  # audited models have one
                actor=request.user,
                obj=obj,
                request=request,
                via="admin",
            )
        return response

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        response = super().changelist_view(request, extra_context)
        if self.audited_as and request.method == "GET" and response.status_code == 200:
            # The list shows several hospitals' rows to a platform admin: a platform-level event.
            hospitals = [None] if self.is_platform_admin(request) else admin_hospital_ids(request)
            for hospital_id in hospitals:
                audit.record(
                    f"{self.audited_as}.list",
                    hospital=Hospital.objects.get(pk=hospital_id) if hospital_id else None,
                    actor=request.user,
                    request=request,
                    via="admin",
                    query=request.GET.urlencode()[:300],
                )
        return response

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        self._require_object(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        self._require_object(request, object_id)
        return super().history_view(request, object_id, extra_context)


class TenantOwnedAdmin(HospitalScopedAdmin):
    """ModelAdmin base for models whose queryset has ``visible_to(tenant)`` (patients, studies,
    reports, AI reads...): a hospital admin's rows are what ``visible_to`` gives them, acting as
    the admin of each hospital they administer, so the admin site and the portal answer from the
    same rule (apps/studies/access.py)."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = admin.ModelAdmin.get_queryset(self, request)
        if self.is_platform_admin(request):
            return qs
        admin_role = frozenset({Role.HOSPITAL_ADMIN})
        hospitals = Hospital.objects.filter(pk__in=admin_hospital_ids(request))
        tenants = [Tenant(hospital=hospital, user=request.user, roles=admin_role) for hospital in hospitals]
        # The models of TenantOwnedAdmin have a queryset with visible_to; ModelAdmin types it as QuerySet.
        return reduce(operator.or_, (qs.visible_to(tenant) for tenant in tenants), qs.none())  # type: ignore[attr-defined]


class ReadOnlyAdminMixin:
    """For append-only or service-managed rows: viewable, never added, changed or deleted here."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Users ------------------------------------------------------------------------------------


class UserCreationForm(auth_forms.AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "full_name")


class UserChangeForm(auth_forms.UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


class MembershipInline(admin.TabularInline):
    model = Membership
    fk_name = "user"
    extra = 0
    fields = ("hospital", "role", "is_active", "created_at")
    readonly_fields = ("created_at",)


@admin.register(User)
class UserAdmin(HospitalScopedAdmin, auth_admin.UserAdmin):
    """E-mail users. Hospital admins may look people of their hospitals up, but change them only
    through the Members page (an account can belong to several hospitals).

    Nobody deletes a user here: the audit trail names them (``AuditEvent.actor`` is protected).
    "Deactivate" switches the account off instead, which ends their sessions and sockets and is
    audited (``user.deactivate``, written by ``User.save``).
    """

    hospital_lookup = "memberships__hospital"
    hospital_admin_can = frozenset({"view"})
    form = UserChangeForm
    add_form = UserCreationForm
    ordering = ("email",)
    list_display = ("email", "full_name", "is_active", "is_staff", "is_superuser", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser", "memberships__role")
    search_fields = ("email", "full_name")
    readonly_fields = ("last_login", "date_joined")
    inlines = [MembershipInline]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal details", {"fields": ("full_name", "first_name", "last_name")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "full_name", "usable_password", "password1", "password2")}),
    )

    actions = ["deactivate_users"]

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        return self.inlines if self.is_platform_admin(request) else []

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description="Deactivate the selected accounts", permissions=["change"])
    def deactivate_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        assert request.user.is_authenticated  # the admin site requires a staff login
        deactivated = 0
        with transaction.atomic():
            for user in queryset.filter(is_active=True).exclude(pk=request.user.pk):
                user.is_active = False
                user.save(update_fields=["is_active"])
                deactivated += 1
        if queryset.filter(pk=request.user.pk).exists():
            self.message_user(request, "Your own account was left active.", messages.WARNING)
        self.message_user(request, f"{deactivated} account(s) deactivated. Accounts are never deleted.")


# --- Hospitals and memberships ----------------------------------------------------------------


@admin.register(Hospital)
class HospitalAdmin(HospitalScopedAdmin):
    hospital_lookup = "pk"
    hospital_admin_can = frozenset({"view", "change"})
    list_display = ("name", "slug", "is_active", "require_doctor_2fa", "created_at")
    list_filter = ("is_active", "require_doctor_2fa")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # The slug is in every URL and the flag switches the tenant off: platform admins only.
        return () if self.is_platform_admin(request) else ("slug", "is_active")

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Sequence[str]]:
        # A read-only field has no form field to fill in (prepopulating it was a KeyError, a 500).
        return dict(self.prepopulated_fields) if self.is_platform_admin(request) else {}

    def save_model(self, request: HttpRequest, obj: Hospital, form: Any, change: bool) -> None:
        policy_changed = change and "require_doctor_2fa" in form.changed_data
        required = obj.require_doctor_2fa
        if policy_changed:
            obj.require_doctor_2fa = not required  # the service makes (and audits) the change
        super().save_model(request, obj, form, change)
        if policy_changed:
            services.set_doctor_second_factor(obj, required, actor=request.user, request=request)


@admin.register(Membership)
class MembershipAdmin(HospitalScopedAdmin):
    list_display = ("user", "hospital", "role", "is_active", "created_at")
    list_filter = ("hospital", "role", "is_active")
    search_fields = ("user__email", "user__full_name", "hospital__name")
    list_select_related = ("user", "hospital")
    autocomplete_fields = ()

    def save_model(self, request: HttpRequest, obj: Membership, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit.record(
            "membership.change" if change else "membership.add",
            hospital=obj.hospital,
            actor=request.user,
            obj=obj,
            request=request,
            via="admin",
            role=obj.role,
            is_active=obj.is_active,
        )
        if change:
            announce_access_change(obj.user_id, "membership")

    def delete_model(self, request: HttpRequest, obj: Membership) -> None:
        audit.record(
            "membership.delete",
            hospital=obj.hospital,
            actor=request.user,
            obj=obj,
            request=request,
            via="admin",
            user=obj.user_id,
            role=obj.role,
        )
        super().delete_model(request, obj)
        announce_access_change(obj.user_id, "membership")

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Membership]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, HospitalScopedAdmin):
    """The audit trail: append-only, so nobody adds, changes or deletes rows here."""

    hospital_admin_can = frozenset({"view"})
    list_display = ("created_at", "hospital", "who", "action", "object_type", "object_id", "ip_address")
    list_filter = ("hospital", "action", "object_type")
    search_fields = ("action", "object_repr", "object_id", "actor_email", "actor_name")
    list_select_related = ("hospital",)
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]

    @admin.display(description="actor", ordering="actor_email")
    def who(self, obj: AuditEvent) -> str:
        return obj.actor_display
