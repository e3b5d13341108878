"""Test clients that sign people in completely: ``force_login`` (which skips the password, as
Django's does) also completes the second factor where the policy asks for one, the way
``django_otp.login`` does after a right code: the session names a confirmed authenticator of the
user. The policy itself stays on; ``force_login(user, second_factor=False)`` leaves a session
half signed in, to test the gate.

``client.confirm_identity()`` stands for the re-authentication a signature needs (the real page
has its own tests in tests/portal/test_second_factor.py).
"""

from __future__ import annotations

import time
from typing import Any

from django import test
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework import test as drf_test

from apps.accounts import reauth, second_factor


def authenticator_for(user: Any) -> TOTPDevice:
    """The user's confirmed authenticator, set up now if they have none."""
    device = second_factor.authenticator(user)
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="Test authenticator", confirmed=True)
    return device


def totp_code(device: TOTPDevice, *, steps_ahead: int = 0) -> str:
    """The code the user's app shows now (or ``steps_ahead`` 30-second steps later: each code is
    accepted once, so a second code within one step must be the next one)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + steps_ahead * device.step
    return f"{totp.token():0{device.digits}d}"


def unused_code(device: TOTPDevice) -> str:
    """A code the device has not accepted yet: the current one, or the next if the current one was
    used (waiting for the step after that if both were)."""
    device.refresh_from_db()
    now = int((time.time() - device.t0) // device.step) + device.drift
    ahead = max(0, device.last_t + 1 - now)
    if ahead > device.tolerance:
        time.sleep((ahead - device.tolerance) * device.step - (time.time() - device.t0) % device.step + 0.1)
        return unused_code(device)
    return totp_code(device, steps_ahead=ahead)


class SecondFactorLoginMixin:
    def force_login(self, user: Any, backend: str | None = None, *, second_factor: bool = True) -> None:
        super().force_login(user, backend)  # type: ignore[misc]
        if second_factor and needs_code(user):
            session = self.session  # type: ignore[attr-defined]
            session[DEVICE_ID_SESSION_KEY] = authenticator_for(user).persistent_id
            session.save()

    def confirm_identity(self) -> None:
        """As if the user had just re-entered their password (and code) on the confirmation page."""
        session = self.session  # type: ignore[attr-defined]
        session[reauth.SESSION_KEY] = time.time()
        session.save()


def needs_code(user: Any) -> bool:
    return second_factor.needs_verification(user)


class Client(SecondFactorLoginMixin, test.Client):
    pass


class APIClient(SecondFactorLoginMixin, drf_test.APIClient):
    pass
