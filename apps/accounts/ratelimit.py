"""Request rate limits, counted in the cache (Redis in production, so every web process shares the
count; the embedded mode's single process keeps it in memory).

* Pages: password-reset requests (per client address and per e-mail address typed) and image
  uploads (per user, page and API together) use ``exceeded`` and answer ``too_many`` (429, a clear
  page and ``Retry-After``).
* API: every write (POST, PUT, PATCH, DELETE) of a user is also limited by DRF's throttling
  (``WriteRateThrottle``), answered as a JSON 429 by ``apps.accounts.api.exception_handler``.

Rates are ``"<count>/<period>"`` with the period ``second``, ``minute``, ``hour`` or ``day`` (the
first letter is enough), as DRF writes them; settings ``PASSWORD_RESET_RATE``, ``UPLOAD_RATE`` and
``API_WRITE_RATE`` (README, "Configuration").
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from rest_framework.permissions import SAFE_METHODS
from rest_framework.throttling import SimpleRateThrottle

from .audit import client_ip

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """``"5/hour"`` → (5, 3600)."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[0]]


def exceeded(scope: str, ident: str, rate: str) -> int:
    """Count one request of ``ident`` (a user id, an address) against ``rate`` in ``scope``.

    Returns 0 while within the rate, else the seconds until it may try again. Fixed windows of
    the rate's period; ``ident`` is hashed, so no e-mail address lands in the cache keys.
    """
    allowed, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    digest = hashlib.sha256(ident.encode()).hexdigest()[:32]
    key = f"ratelimit:{scope}:{digest}:{window}"
    cache.add(key, 0, timeout=period + 5)
    try:
        used = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=period + 5)
        used = 1
    if used <= allowed:
        return 0
    return max(1, math.ceil((window + 1) * period - now))


def minutes_text(seconds: int) -> str:
    minutes = math.ceil(seconds / 60)
    return "a minute" if minutes <= 1 else f"{minutes} minutes"


def too_many(request: HttpRequest, message: str, retry_after: int) -> HttpResponse:
    """The 429 page: what was limited, and when to try again."""
    context = {"message": message, "wait": minutes_text(retry_after)}
    response = render(request, "429.html", context, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def password_reset_wait(request: HttpRequest, email: str) -> int:
    """Count a password-reset request from this address and for this e-mail; seconds to wait, or 0.
    Both counters apply whether or not an account has the address, so the limit tells nothing."""
    rate = settings.PASSWORD_RESET_RATE
    by_address = exceeded("password_reset.address", client_ip(request) or "unknown", rate)
    by_email = exceeded("password_reset.email", email.strip().lower(), rate) if email.strip() else 0
    return max(by_address, by_email)


def upload_wait(user: Any) -> int:
    """Count an image upload of ``user`` (page or API); seconds to wait, or 0."""
    return exceeded("upload", str(user.pk), settings.UPLOAD_RATE)


class WriteRateThrottle(SimpleRateThrottle):
    """DRF throttle on the API's writes, per user (per address for requests without one); reads
    are not counted."""

    scope = "api_write"

    def allow_request(self, request: Any, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        return super().allow_request(request, view)

    def get_cache_key(self, request: Any, view: Any) -> str:
        ident = request.user.pk if request.user and request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}
