"""Login, password management, the hospital picker and the About page."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from .forms import LoginForm
from .models import Membership, Role


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
