"""Tenant resolution for server-rendered pages."""

from __future__ import annotations

from collections.abc import Callable

from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import Resolver404, resolve
from django.views.defaults import page_not_found

from .tenancy import admin_scope, resolve_tenant, tenant_scope


class TenantMiddleware:
    """Sets ``request.tenant`` for every URL with a ``hospital_slug`` and runs the view in that
    hospital's scope.

    * anonymous → redirect to login (pages); the API answers 401/403 itself (DRF authenticates
      tokens later, inside the view, so API tenancy is resolved by ``TenantAPIMixin``), and so
      does DICOMweb (``apps.integration.dicomweb_views.dicomweb_endpoint``);
    * logged in but not a member of that hospital → 404, same as a hospital that does not exist;
    * ``/admin/`` runs in the admin scope (own hospitals only, everything for superusers).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.tenant = None  # type: ignore[attr-defined]  # TenantRequest's attribute, set here
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)

        if match.namespaces and match.namespaces[0] == "admin":
            with admin_scope(request.user):
                return self.get_response(request)

        slug = match.kwargs.get("hospital_slug")
        if slug is None or request.path_info.startswith(("/api/", "/dicomweb/")):
            return self.get_response(request)

        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        try:
            tenant = resolve_tenant(request.user, slug)
        except Http404:
            return page_not_found(request, Http404("No such hospital."))
        request.tenant = tenant  # type: ignore[attr-defined]  # TenantRequest's attribute, set here
        with tenant_scope(tenant.hospital):
            return self.get_response(request)
