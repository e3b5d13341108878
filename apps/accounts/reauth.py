"""Fresh re-authentication before a signature (the usual e-signature practice): signing or
amending a report needs the password, and the authenticator code where the user has one, entered
within the last ``REAUTH_MAX_AGE_MINUTES`` (default 5) in this session.

Views call ``is_fresh(request)``; when it is not, they keep what the doctor typed (the report
draft is saved first) and ``ask(request, purpose, next_url)`` sends them to the confirmation page,
which brings them back to ``next_url``.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import redirect
from django.urls import reverse

SESSION_KEY = "reauth_at"

#: Why the confirmation is asked for, in the words the page uses.
PURPOSES = {
    "sign": "sign a report",
    "amend": "amend a signed report",
}


def max_age_seconds() -> int:
    return settings.REAUTH_MAX_AGE_MINUTES * 60


def is_fresh(request: HttpRequest) -> bool:
    """Did the user confirm their identity in this session within the allowed window?"""
    confirmed_at = request.session.get(SESSION_KEY)
    return isinstance(confirmed_at, (int, float)) and 0 <= time.time() - confirmed_at <= max_age_seconds()


def mark_fresh(request: HttpRequest) -> None:
    request.session[SESSION_KEY] = time.time()


def ask(request: HttpRequest, purpose: str, next_url: str) -> HttpResponseRedirect:
    """Redirect to the confirmation page, which returns to ``next_url`` afterwards."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown re-authentication purpose {purpose!r}")
    return redirect(f"{reverse('accounts:reauthenticate')}?{urlencode({'next': next_url, 'for': purpose})}")
