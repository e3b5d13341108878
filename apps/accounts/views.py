"""Login, password management, API tokens, the hospital picker and the About page."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from . import tokens
from .forms import ApiTokenForm, LoginForm
from .models import ApiToken, Membership, Role


class LoginView(auth_views.LoginView):
    form_class = LoginForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True


class PlainLabelsMixin:
    """Form labels without Django's trailing colon, as on every other page of the portal."""

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()  # type: ignore[misc]
        kwargs["label_suffix"] = ""
        return kwargs


class PasswordChangeView(PlainLabelsMixin, auth_views.PasswordChangeView):
    template_name = "accounts/password_change_form.html"
    success_url = "/accounts/password/change/done/"


class PasswordResetView(PlainLabelsMixin, auth_views.PasswordResetView):
    template_name = "accounts/password_reset_form.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"
    success_url = "/accounts/password/reset/sent/"


class PasswordResetConfirmView(PlainLabelsMixin, auth_views.PasswordResetConfirmView):
    template_name = "accounts/password_reset_confirm.html"
    success_url = "/accounts/reset/done/"


def home_url_for(membership: Membership) -> str:
    """Where a member lands in a hospital: patients go to their portal, staff to the caseload."""
    if membership.role == Role.PATIENT:
        return f"/h/{membership.hospital.slug}/my/"
    return f"/h/{membership.hospital.slug}/"


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """One hospital: go straight there. Several: pick one. None: say so."""
    memberships = list(
        Membership.objects.filter(user=request.user, is_active=True, hospital__is_active=True)
        .select_related("hospital")
        .order_by("hospital__name", "role")
    )
    hospitals = {m.hospital_id for m in memberships}
    if len(hospitals) == 1:
        staff = [m for m in memberships if m.role != Role.PATIENT]
        return redirect(home_url_for(staff[0] if staff else memberships[0]))
    choices = []
    seen = set()
    for m in memberships:
        if m.hospital_id in seen:
            continue
        seen.add(m.hospital_id)
        roles = [x.get_role_display() for x in memberships if x.hospital_id == m.hospital_id]
        staff = [x for x in memberships if x.hospital_id == m.hospital_id and x.role != Role.PATIENT]
        choices.append({"hospital": m.hospital, "roles": roles, "url": home_url_for(staff[0] if staff else m)})
    return render(request, "accounts/picker.html", {"choices": choices})


def about(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/about.html")


# --- API tokens ------------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    """The user's API tokens: create one (shown once, on this response only), list, revoke."""
    form = ApiTokenForm(request.POST or None, user=request.user)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            token, raw = tokens.create(
                request.user,  # type: ignore[arg-type]
                name=form.cleaned_data["name"],
                hospital=form.cleaned_data["hospital"],
                request=request,
            )
        except ValidationError as exc:
            form.add_error(None, exc.messages[0])
        else:
            created = {"token": token, "raw": raw}
            form = ApiTokenForm(user=request.user)
    context = {
        "form": form,
        "created": created,
        "tokens": tokens.active_tokens(request.user),  # type: ignore[arg-type]
        "may_create": tokens.clinical_hospitals(request.user).exists(),  # type: ignore[arg-type]
        "ttl_hours": settings.API_TOKEN_TTL_HOURS,
    }
    response = render(request, "accounts/api_tokens.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"  # a new token is on this page exactly once
    return response


@login_required
@require_POST
def api_token_revoke(request: HttpRequest) -> HttpResponse:
    token = ApiToken.objects.filter(user=request.user, token_key=request.POST.get("token", "")).first()
    if token is None:
        raise Http404("No such token.")
    tokens.revoke(token, actor=request.user, request=request)
    messages.success(request, f"The token {token.token_key}… is revoked: it opens nothing from now on.")
    return redirect("accounts:api_tokens")


@login_required
@require_POST
def api_tokens_revoke_all(request: HttpRequest) -> HttpResponse:
    count = tokens.revoke_all(request.user, reason="user_request", actor=request.user, request=request)  # type: ignore[arg-type]
    if count:
        messages.success(request, f"All your API tokens are revoked ({count}).")
    else:
        messages.info(request, "You had no API tokens to revoke.")
    return redirect("accounts:api_tokens")
