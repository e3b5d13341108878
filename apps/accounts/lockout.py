"""Sign-in lockout (django-axes), in two layers:

* **per account and address**: ``AXES_FAILURE_LIMIT`` (5) failed sign-ins for one e-mail address
  from one client address pause sign-in for that pair for ``AXES_COOLOFF_HOURS``;
* **per account**: ``AXES_ACCOUNT_FAILURE_LIMIT`` (20) failures for one e-mail address from any
  addresses together pause that account everywhere, against guessing spread over many addresses.
  Higher than the first, so that one attacker cannot lock a doctor out from everywhere with a few
  tries.

Both count unknown addresses exactly like real accounts (so the pause tells nothing about which
accounts exist), e-mail addresses count case-insensitively, and a pause is lifted by its cool-off,
by a password reset through the e-mailed link, by a hospital admin on the Members page, or by a
platform admin (``/admin/`` → Axes → Access attempts, or ``manage.py axes_reset_username EMAIL``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_failure_limit
from axes.models import AccessAttempt
from axes.utils import reset
from django.conf import settings
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from . import audit


def username_from(request: HttpRequest, credentials: dict[str, Any] | None) -> str:
    """The e-mail address tried, as the lockout counts it (``AXES_USERNAME_CALLABLE``)."""
    source = credentials if credentials else getattr(request, "POST", {})
    return str(source.get(settings.AXES_USERNAME_FORM_FIELD) or "").strip().lower()


class LockoutHandler(AxesDatabaseHandler):
    """Axes compares the largest failure count of its ``AXES_LOCKOUT_PARAMETERS`` with one limit.
    Here the per-account count (the ``"username"`` entry) only locks once it reaches
    ``AXES_ACCOUNT_FAILURE_LIMIT``; the (account, address) pair locks at ``AXES_FAILURE_LIMIT``."""

    def get_failures(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> int:
        pair = account = 0
        for parameter, attempts in zip(
            settings.AXES_LOCKOUT_PARAMETERS, self.get_user_attempts(request, credentials), strict=True
        ):
            failures = attempts.aggregate(total=Sum("failures_since_start"))["total"] or 0
            if parameter == "username":
                account = failures
            else:
                pair = max(pair, failures)
        if account >= settings.AXES_ACCOUNT_FAILURE_LIMIT:
            return max(pair, account, get_failure_limit(request, credentials))
        return pair


def paused_emails(emails: list[str]) -> set[str]:
    """Which of ``emails`` cannot sign in right now (from some address, or from anywhere)."""
    since = timezone.now() - dt.timedelta(hours=settings.AXES_COOLOFF_TIME)
    recent = AccessAttempt.objects.filter(username__in=[e.lower() for e in emails], attempt_time__gte=since)
    paused = set(
        recent.filter(failures_since_start__gte=settings.AXES_FAILURE_LIMIT).values_list("username", flat=True)
    )
    totals = recent.values("username").annotate(total=Sum("failures_since_start"))
    paused |= {row["username"] for row in totals if row["total"] >= settings.AXES_ACCOUNT_FAILURE_LIMIT}
    return paused


def unlock(email: str, *, hospital: Any = None, actor: Any = None, request: HttpRequest | None = None) -> int:
    """Lift every sign-in pause of ``email``; audited. Returns how many records were cleared."""
    cleared = reset(username=email.lower())
    audit.record("auth.unlock", hospital=hospital, actor=actor, request=request, email=email.lower(), cleared=cleared)
    return cleared


def lockout_response(request: HttpRequest, original_response: Any = None, credentials: Any = None) -> HttpResponse:
    """What a paused sign-in answers (``AXES_LOCKOUT_CALLABLE``): 429, the page, ``Retry-After``."""
    minutes = max(1, round(settings.AXES_COOLOFF_TIME * 60))
    response = render(request, "accounts/locked.html", {"minutes": minutes}, status=429)
    response["Retry-After"] = str(minutes * 60)
    return response
