"""REST API plumbing shared by every app: tenant resolution after DRF authentication, the token
logout endpoints, and an exception handler that turns validation problems into a JSON 400 rather
than a 500."""

from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from knox.auth import TokenAuthentication
from rest_framework.exceptions import NotFound, PermissionDenied, Throttled
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from . import audit, tokens
from .models import ApiToken, User
from .tenancy import resolve_tenant, tenant_scope

BOUND_TO_OTHER_HOSPITAL = "This API token is bound to another hospital. Create a token for this hospital."


class TenantAPIMixin:
    """For DRF views under ``/api/v1/h/<hospital_slug>/``.

    DRF authenticates (session or token) inside ``initial()``, so the tenant is resolved there,
    after authentication and before permissions, and the hospital scope stays active until the
    response is finalised. Non-members get 404, like a hospital that does not exist; a token bound
    to another hospital gets 403.
    """

    tenant: Any = None
    _scope_cm: Any = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # A mixin for APIView: mypy checks it without its base, hence the ignores in these two methods.
        self.perform_authentication(request)  # type: ignore[attr-defined]
        if request.user and request.user.is_authenticated:
            self.tenant = resolve_tenant(request.user, kwargs["hospital_slug"])
            # Set before the token check, so that its refusal is audited in this hospital.
            request.tenant = self.tenant  # type: ignore[attr-defined]  # read by audit.record_refused_request
            token = request.auth
            if isinstance(token, ApiToken) and token.hospital_id not in (None, self.tenant.hospital.pk):
                raise PermissionDenied(BOUND_TO_OTHER_HOSPITAL)
            self._scope_cm = tenant_scope(self.tenant.hospital)
            self._scope_cm.__enter__()
        super().initial(request, *args, **kwargs)  # type: ignore[misc]

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        try:
            return super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        finally:
            if self._scope_cm is not None:
                self._scope_cm.__exit__(None, None, None)
                self._scope_cm = None


class TokenLogout(APIView):
    """Revoke the token this request was made with."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Revoke this token",
        tags=["Authentication"],
        description="The token in the Authorization header stops working at once.",
        request=None,
        responses={204: OpenApiResponse(description="Revoked."), 401: OpenApiResponse(description="No valid token.")},
    )
    def post(self, request: Request) -> Response:
        token = cast(ApiToken, request.auth)  # authenticated by TokenAuthentication, the only class here
        tokens.revoke(token, actor=request.user, request=request)
        return Response(status=204)


class TokenLogoutAll(APIView):
    """Revoke every token of the user (the API's "log out everywhere")."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Revoke all your tokens",
        tags=["Authentication"],
        description="Every API token of your account, this one included, stops working at once.",
        request=None,
        responses={204: OpenApiResponse(description="Revoked."), 401: OpenApiResponse(description="No valid token.")},
    )
    def post(self, request: Request) -> Response:
        user = cast(User, request.user)  # IsAuthenticated
        tokens.revoke_all(user, reason="user_request", actor=user, request=request)
        return Response(status=204)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    from django.core.exceptions import ValidationError as DjangoValidationError

    refused = _refused_status(exc)
    request = context.get("request")
    # Refusals inside a hospital; one outside any (not a member) was audited by resolve_tenant.
    if refused and request is not None and request.tenant is not None:
        audit.record_refused_request(request, refused, str(exc))
    if isinstance(exc, DjangoValidationError):
        return Response({"error": " ".join(exc.messages)}, status=400)
    if isinstance(exc, Throttled):
        response = drf_exception_handler(exc, context)
        if response is not None:
            wait = exc.wait  # type: ignore[attr-defined]  # set by Throttled(wait=...); not in its stubs
            wait_text = f"{wait:.0f} seconds" if wait is not None else "a while"
            response.data = {"detail": f"{exc.detail} You can try again in {wait_text}."}
        return response
    if isinstance(exc, Http404):
        return Response({"detail": "Not found."}, status=404)
    return drf_exception_handler(exc, context)


def _refused_status(exc: Exception) -> int | None:
    if isinstance(exc, (Http404, NotFound)):
        return 404
    if isinstance(exc, (DjangoPermissionDenied, PermissionDenied)):
        return 403
    return None
