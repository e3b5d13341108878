"""The second factor (TOTP with django-otp; recovery codes are django-otp static tokens): who must
use one, checking a code, and the middleware that keeps a half-signed-in session out of
everything but the sign-in pages.

Policy (``required_for``):
* platform staff and superusers (they reach ``/admin/``);
* hospital admins (an active ``hospital_admin`` membership);
* doctors of a hospital whose ``require_doctor_2fa`` is on;
* nobody else must, but anyone may enrol, and whoever has an authenticator is always asked for it.

A session is *verified* once a code was accepted in it: django-otp keeps the device's id in the
session (``django_otp.DEVICE_ID_SESSION_KEY``) and ``OTPMiddleware`` gives ``request.user``
``is_verified()``. A new login starts unverified.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import Resolver404, resolve, reverse
from django.utils import timezone
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from .models import Membership, Role, User

RECOVERY_CODE_COUNT = 10
RECOVERY_DEVICE_NAME = "Recovery codes"
AUTHENTICATOR_NAME = "Authenticator app"

API_MESSAGE = (
    "Your browser session has not finished signing in: enter the code from your authenticator app "
    "at /accounts/2fa/verify/, or use an API token."
)


def _policy_memberships(user: Any) -> Any:
    return Membership.objects.filter(user=user, is_active=True, hospital__is_active=True).filter(
        Q(role=Role.HOSPITAL_ADMIN) | Q(role=Role.DOCTOR, hospital__require_doctor_2fa=True)
    )


def required_for(user: Any) -> bool:
    """The policy above: must this user sign in with a second factor?"""
    if not user.is_authenticated:
        return False
    return bool(user.is_staff or user.is_superuser) or _policy_memberships(user).exists()


def authenticator(user: Any) -> TOTPDevice | None:
    """The user's confirmed authenticator (TOTP device), if they have set one up."""
    return TOTPDevice.objects.filter(user=user, confirmed=True).order_by("-id").first()


def needs_verification(user: Any) -> bool:
    """Must this user enter a code before using the portal (the policy requires it, or they have
    an authenticator)? One query; no query for staff."""
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    devices = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
    policy = _policy_memberships(OuterRef("pk"))
    return User.objects.filter(pk=user.pk).filter(Exists(devices) | Exists(policy)).exists()


def session_is_verified(session: SessionBase, user: Any) -> bool:
    """Was a code accepted in this session, with a device of ``user`` that is still confirmed?
    (For WebSockets, which have a session but no ``OTPMiddleware``.)"""
    persistent_id = session.get(DEVICE_ID_SESSION_KEY)
    if not persistent_id:
        return False
    device = Device.from_persistent_id(persistent_id)
    return device is not None and device.user_id == user.pk and device.confirmed


def mark_verified(request: HttpRequest, device: Device) -> None:
    """The code was right: this session is verified from now on (a new session key, as at login)."""
    request.session.cycle_key()
    otp_login(request, device)


def normalise_code(code: str) -> str:
    """Codes as people type them: spaces and hyphens dropped, lower case (recovery codes)."""
    return re.sub(r"[\s-]+", "", code or "").lower()[:32]


def check_code(user: Any, code: str) -> Device | None:
    """The device that accepts ``code`` (the authenticator's current code, or an unused recovery
    code, which is then used up), else None. django-otp throttles each device after failures."""
    code = normalise_code(code)
    if not code:
        return None
    candidates: list[Device] = []
    if code.isdigit():
        candidates = list(TOTPDevice.objects.filter(user=user, confirmed=True))
    else:
        candidates = list(StaticDevice.objects.filter(user=user, confirmed=True))
    with transaction.atomic():
        for device in candidates:
            locked = type(device).objects.select_for_update().get(pk=device.pk)
            if locked.verify_token(code):
                return locked
    return None


def wait_seconds(user: Any) -> int:
    """Seconds until the user's devices accept another try after repeated wrong codes (0: now)."""
    longest = 0
    for device in [*TOTPDevice.objects.filter(user=user, confirmed=True), *StaticDevice.objects.filter(user=user)]:
        allowed, data = device.verify_is_allowed()
        if not allowed and data and data.get("locked_until"):
            longest = max(longest, int((data["locked_until"] - timezone.now()).total_seconds()) + 1)
    return longest


def pending_authenticator(user: Any) -> TOTPDevice:
    """The authenticator being set up (unconfirmed), created on first use, so that reloading the
    set-up page keeps showing the same QR code."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("-id").first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name=AUTHENTICATOR_NAME, confirmed=False)
    return device


def new_recovery_codes(user: Any) -> list[str]:
    """Replace the user's recovery codes with ``RECOVERY_CODE_COUNT`` new ones; returns them (they
    are shown once)."""
    with transaction.atomic():
        StaticDevice.objects.filter(user=user).delete()
        device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
        codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
        StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def recovery_codes_left(user: Any) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


def confirm_authenticator(user: Any, device: TOTPDevice) -> list[str]:
    """The pending authenticator accepted a code: it replaces any earlier one; new recovery codes."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
        return new_recovery_codes(user)


def remove_all(user: Any) -> None:
    """Forget the user's authenticator and recovery codes (they set one up again if required)."""
    with transaction.atomic():
        TOTPDevice.objects.filter(user=user).delete()
        StaticDevice.objects.filter(user=user).delete()


def qr_svg(data: str) -> str:
    """An SVG QR code of ``data``, as markup to put inline in the page (no image request)."""
    import qrcode
    from qrcode.image.svg import SvgPathImage

    out = io.BytesIO()
    qrcode.make(data, image_factory=SvgPathImage, box_size=8, border=2).save(out)
    markup = out.getvalue().decode()
    return markup[markup.index("<svg") :]


# --- the gate ------------------------------------------------------------------------------------

#: URL names a signed-in but not yet verified session may reach.
OPEN_URL_NAMES = frozenset(
    {
        "accounts:login",
        "accounts:logout",
        "accounts:about",
        "accounts:two_factor_verify",
        "accounts:two_factor_setup",
        "accounts:password_reset",
        "accounts:password_reset_done",
        "accounts:password_reset_confirm",
        "accounts:password_reset_complete",
        "api-schema",
        "api-docs",
    }
)


#: Paths for programs, not people: they get a JSON 403 instead of a redirect to the code page.
MACHINE_PREFIXES = ("/api/", "/dicomweb/")


def challenge_url(user: Any, next_url: str) -> str:
    """Where a signed-in, unverified user goes: enter a code, or set up an authenticator first."""
    name = "accounts:two_factor_verify" if authenticator(user) else "accounts:two_factor_setup"
    return f"{reverse(name)}?{urlencode({'next': next_url})}"


class SecondFactorMiddleware:
    """After ``OTPMiddleware``: a signed-in user who must enter a code (``needs_verification``) and
    has not yet in this session reaches only the sign-in pages. Pages redirect to the code page (or
    to setting up an authenticator); the API and DICOMweb answer 403 to such a browser session
    (their own credentials, API tokens and PACS credentials, are checked by the views)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if not user.is_authenticated or user.is_verified() or self._is_open(request):
            return self.get_response(request)
        if request.path_info.startswith(MACHINE_PREFIXES):
            if not needs_verification(user):
                return self.get_response(request)
            if request.META.get("HTTP_AUTHORIZATION"):
                # The header must stand on its own (an API token, a PACS credential): the
                # half-signed-in session is dropped, so that DRF cannot fall back to it when the
                # header is of another scheme.
                request.user = AnonymousUser()
                return self.get_response(request)
            return JsonResponse({"detail": API_MESSAGE}, status=403)
        if needs_verification(user):
            return redirect(challenge_url(user, request.get_full_path()))
        return self.get_response(request)

    @staticmethod
    def _is_open(request: HttpRequest) -> bool:
        try:
            match = resolve(request.path_info)
        except Resolver404:
            return True  # a 404 page shows nothing
        return match.view_name in OPEN_URL_NAMES
