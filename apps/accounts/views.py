"""Login and the second factor, re-authentication, password management, API tokens, the
account security page, the hospital picker and the About page."""

from __future__ import annotations

from base64 import b32encode
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate
from django.contrib.auth import login as auth_login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_otp.plugins.otp_static.models import StaticDevice

from . import audit, lockout, ratelimit, reauth, second_factor, services, tokens
from .forms import AccountFromInvitationForm, ApiTokenForm, CodeForm, LoginForm, ReauthForm, SetupCodeForm
from .models import ApiToken, Membership, Role
from .tenancy import AuthenticatedRequest

WRONG_CODE = (
    "That code is not right. Use the newest code your app shows (each code works once), or one of your recovery codes."
)


def _next_url(request: HttpRequest, default: str = "") -> str:
    """The ``next`` parameter if it points into this site, else ``default`` (the home page)."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default or reverse("accounts:home")


def _no_store(response: HttpResponse) -> HttpResponse:
    """Pages that show a secret once (recovery codes, a set-up key) are never cached."""
    response["Cache-Control"] = "no-store"
    return response


class LoginView(auth_views.LoginView):
    """Password first (django-axes counts failures); then, for whoever needs one, the second
    factor: the code page, or setting up an authenticator if they have none yet."""

    form_class = LoginForm
    template_name = "accounts/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_valid(form)
        user = form.get_user()
        if second_factor.needs_verification(user):
            return redirect(second_factor.challenge_url(user, response["Location"]))
        return response


# --- second factor ----------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_verify(request: AuthenticatedRequest) -> HttpResponse:
    """The second step of signing in: a code from the authenticator app, or a recovery code."""
    user = request.user
    next_url = _next_url(request)
    if user.is_verified():
        return redirect(next_url)
    if second_factor.authenticator(user) is None:
        if second_factor.required_for(user):
            return redirect(second_factor.challenge_url(user, next_url))
        return redirect(next_url)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = second_factor.check_code(user, form.cleaned_data["code"])
        if device is not None:
            second_factor.mark_verified(request, device)
            used_recovery = isinstance(device, StaticDevice)
            audit.record(
                "auth.second_factor",
                hospital=None,
                actor=user,
                request=request,
                method="recovery_code" if used_recovery else "authenticator",
            )
            if used_recovery:
                left = second_factor.recovery_codes_left(user)
                messages.warning(
                    request,
                    f"You signed in with a recovery code; {left} left. If your phone is lost, set up the "
                    "authenticator again on the Account security page.",
                )
            return redirect(next_url)
        audit.record("auth.second_factor_failed", hospital=None, actor=user, request=request)
        wait = second_factor.wait_seconds(user)
        form.add_error("code", WRONG_CODE + (f" After several wrong codes, wait {wait} seconds." if wait else ""))
    context = {"form": form, "next": next_url}
    return render(request, "accounts/two_factor_verify.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def two_factor_setup(request: AuthenticatedRequest) -> HttpResponse:
    """Set up an authenticator app: scan the QR code (or type the key), enter the first code, get
    the recovery codes once. Replacing an authenticator needs a session verified with the old one."""
    user = request.user
    next_url = _next_url(request, default=reverse("accounts:security"))
    if second_factor.authenticator(user) is not None and not user.is_verified():
        return redirect(second_factor.challenge_url(user, request.get_full_path()))
    device = second_factor.pending_authenticator(user)
    form = SetupCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(second_factor.normalise_code(form.cleaned_data["code"])):
            codes = second_factor.confirm_authenticator(user, device)
            second_factor.mark_verified(request, device)
            audit.record("auth.second_factor_enrolled", hospital=None, actor=user, request=request)
            context = {"codes": codes, "next": next_url, "first_time": True}
            return _no_store(render(request, "accounts/recovery_codes.html", context))
        form.add_error(
            "code",
            "That code is not right. Check that your phone's clock is set automatically, then try the newest code.",
        )
    key = b32encode(device.bin_key).decode()
    context = {
        "form": form,
        "next": next_url,
        "qr_svg": second_factor.qr_svg(device.config_url),
        "key_groups": [key[i : i + 4] for i in range(0, len(key), 4)],
        "required": second_factor.required_for(user),
        "replacing": second_factor.authenticator(user) is not None,
    }
    return _no_store(render(request, "accounts/two_factor_setup.html", context, status=400 if form.errors else 200))


@login_required
@require_POST
def recovery_codes_new(request: AuthenticatedRequest) -> HttpResponse:
    """New recovery codes (the old ones stop working), shown once. Only with an authenticator, so
    only in a verified session (the middleware sees to that)."""
    if second_factor.authenticator(request.user) is None:
        return redirect("accounts:two_factor_setup")
    codes = second_factor.new_recovery_codes(request.user)
    audit.record("auth.recovery_codes_new", hospital=None, actor=request.user, request=request)
    return _no_store(
        render(request, "accounts/recovery_codes.html", {"codes": codes, "next": reverse("accounts:security")})
    )


@login_required
@require_POST
def two_factor_remove(request: AuthenticatedRequest) -> HttpResponse:
    """Turn two-step verification off, where no policy requires it."""
    if second_factor.required_for(request.user):
        messages.error(request, "Your role requires two-step verification, so it cannot be turned off.")
        return redirect("accounts:security")
    second_factor.remove_all(request.user)
    audit.record("auth.second_factor_removed", hospital=None, actor=request.user, request=request)
    messages.success(request, "Two-step verification is off. Your password alone now signs you in.")
    return redirect("accounts:security")


@login_required
@require_http_methods(["GET", "POST"])
def reauthenticate(request: AuthenticatedRequest) -> HttpResponse:
    """Confirm it is you before a signature: the password, and the authenticator code if there is
    one. Then back to where the doctor was (``next``), whose form content was kept."""
    user = request.user
    purpose = request.POST.get("for") or request.GET.get("for") or ""
    purpose_text = reauth.PURPOSES.get(purpose, "continue")
    next_url = _next_url(request)
    device = second_factor.authenticator(user)
    form = ReauthForm(request.POST or None, with_code=device is not None)
    if request.method == "POST" and form.is_valid():
        # Through authenticate(), so django-axes counts wrong passwords here as at the login.
        same_user = authenticate(request, username=user.email, password=form.cleaned_data["password"])
        ok = same_user is not None and same_user.pk == user.pk
        if ok and device is not None:
            ok = second_factor.check_code(user, form.cleaned_data["code"]) is not None
        if ok:
            reauth.mark_fresh(request)
            audit.record("auth.reauthenticate", hospital=None, actor=user, request=request, purpose=purpose)
            minutes = settings.REAUTH_MAX_AGE_MINUTES
            messages.success(
                request, f"Thank you, {user.display_name}. For the next {minutes} minutes you can {purpose_text}."
            )
            return redirect(next_url)
        audit.record("auth.reauthenticate_failed", hospital=None, actor=user, request=request, purpose=purpose)
        form.add_error(
            None,
            "The password or the code is not right."
            + (" Each code works once: if you just used one, wait for the next." if device else ""),
        )
    context = {
        "form": form,
        "next": next_url,
        "purpose": purpose if purpose in reauth.PURPOSES else "",
        "purpose_text": purpose_text,
        "minutes": settings.REAUTH_MAX_AGE_MINUTES,
    }
    return render(request, "accounts/reauthenticate.html", context, status=400 if form.errors else 200)


@login_required
@require_GET
def security(request: AuthenticatedRequest) -> HttpResponse:
    """Account security: password, two-step verification, recovery codes, API tokens."""
    user = request.user
    context = {
        "authenticator": second_factor.authenticator(user),
        "required": second_factor.required_for(user),
        "recovery_left": second_factor.recovery_codes_left(user),
        "token_count": len(tokens.active_tokens(user)),
    }
    return render(request, "accounts/security.html", context)


class PlainLabelsMixin:
    """Form labels without Django's trailing colon, as on every other page of the portal."""

    def get_form_kwargs(self) -> dict[str, Any]:
        kwargs = super().get_form_kwargs()  # type: ignore[misc]  # a mixin for FormMixin views
        kwargs["label_suffix"] = ""
        return kwargs


class PasswordChangeView(PlainLabelsMixin, auth_views.PasswordChangeView):
    template_name = "accounts/password_change_form.html"
    success_url = "/accounts/password/change/done/"


class PasswordResetView(PlainLabelsMixin, auth_views.PasswordResetView):
    """Ask for a reset link, at most ``PASSWORD_RESET_RATE`` times per client address and per
    e-mail address (429 beyond; the same for addresses with and without an account)."""

    template_name = "accounts/password_reset_form.html"
    email_template_name = "accounts/password_reset_email.txt"
    subject_template_name = "accounts/password_reset_subject.txt"
    success_url = "/accounts/password/reset/sent/"

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = ratelimit.password_reset_wait(request, str(request.POST.get("email", ""))[:254])
        if wait:
            audit.record("auth.password_reset_limited", hospital=None, request=request)
            return ratelimit.too_many(
                request,
                "Too many password-reset requests from here or for this e-mail address. If a reset e-mail "
                "was sent, it is valid for a few days: check your inbox and spam folder.",
                wait,
            )
        return super().post(request, *args, **kwargs)


class PasswordResetConfirmView(PlainLabelsMixin, auth_views.PasswordResetConfirmView):
    """Set a new password from the e-mailed link; this also lifts any sign-in pause of the account
    (the link proved the mailbox)."""

    template_name = "accounts/password_reset_confirm.html"
    success_url = "/accounts/reset/done/"

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        lockout.unlock(form.user.email, actor=form.user, request=self.request)
        return response


def home_url_for(membership: Membership) -> str:
    """Where a member lands in a hospital: patients go to their portal, staff to the caseload."""
    if membership.role == Role.PATIENT:
        return f"/h/{membership.hospital.slug}/my/"
    return f"/h/{membership.hospital.slug}/"


@login_required
def home(request: AuthenticatedRequest) -> HttpResponse:
    """One hospital: go straight there. Several: pick one. None: the platform admin goes on to the
    admin; anyone else is told to ask for access."""
    memberships = list(
        Membership.objects.filter(user=request.user, is_active=True, hospital__is_active=True)
        .select_related("hospital")
        .order_by("hospital__name", "role")
    )
    hospitals = {m.hospital_id for m in memberships}
    if not hospitals and request.user.is_staff:  # a platform admin: their work is in the admin
        return redirect("admin:index")
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
def api_tokens(request: AuthenticatedRequest) -> HttpResponse:
    """The user's API tokens: create one (shown once, on this response only), list, revoke."""
    form = ApiTokenForm(request.POST or None, user=request.user)
    created = None
    if request.method == "POST" and form.is_valid():
        try:
            token, raw = tokens.create(
                request.user,
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
        "tokens": tokens.active_tokens(request.user),
        "may_create": tokens.clinical_hospitals(request.user).exists(),
        "ttl_hours": settings.API_TOKEN_TTL_HOURS,
    }
    response = render(request, "accounts/api_tokens.html", context, status=400 if form.errors else 200)
    response["Cache-Control"] = "no-store"  # a new token is on this page exactly once
    return response


@login_required
@require_POST
def api_token_revoke(request: AuthenticatedRequest) -> HttpResponse:
    key = request.POST.get("token", "")
    token = ApiToken.objects.filter(user=request.user, token_key=key).first() if "\x00" not in key else None
    if token is None:
        raise Http404("No such token.")
    tokens.revoke(token, actor=request.user, request=request)
    messages.success(request, f"The token {token.token_key}… is revoked: it opens nothing from now on.")
    return redirect("accounts:api_tokens")


@login_required
@require_POST
def api_tokens_revoke_all(request: AuthenticatedRequest) -> HttpResponse:
    count = tokens.revoke_all(request.user, reason="user_request", actor=request.user, request=request)
    if count:
        messages.success(request, f"All your API tokens are revoked ({count}).")
    else:
        messages.info(request, "You had no API tokens to revoke.")
    return redirect("accounts:api_tokens")


# --- invitations -----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The e-mailed link: accept with the invited address's account (signed in), or create that
    account here. Unknown, used, withdrawn and expired links get the same page."""
    invitation = services.find_invitation(token)
    if invitation is None:
        return render(request, "accounts/invitation_invalid.html", status=404)
    user = request.user
    context: dict[str, Any] = {"invitation": invitation}
    if user.is_authenticated:
        if user.email.lower() != invitation.email:
            return render(request, "accounts/invitation.html", {**context, "wrong_account": True}, status=403)
        if request.method == "POST":
            try:
                membership = services.accept_invitation(invitation, user, request=request)
            except ValidationError as exc:
                return render(request, "accounts/invitation.html", {**context, "error": exc.messages[0]}, status=400)
            messages.success(
                request, f"Welcome to {membership.hospital.name}: you are a {membership.get_role_display().lower()}."
            )
            return redirect(home_url_for(membership))
        return render(request, "accounts/invitation.html", context)
    form = AccountFromInvitationForm(request.POST or None, email=invitation.email)
    if request.method == "POST" and form.is_valid():
        try:
            new_user = services.create_account_from_invitation(
                invitation,
                full_name=form.cleaned_data["full_name"],
                password=form.cleaned_data["password1"],
                request=request,
            )
        except ValidationError as exc:
            form.add_error(None, exc.messages[0])
        else:
            auth_login(request, new_user, backend="django.contrib.auth.backends.ModelBackend")
            membership = new_user.memberships.select_related("hospital").get(
                hospital=invitation.hospital, role=invitation.role
            )
            messages.success(request, f"Welcome to {membership.hospital.name}. Your account is ready.")
            return redirect(home_url_for(membership))
    context["form"] = form
    return render(request, "accounts/invitation.html", context, status=400 if form.errors else 200)
