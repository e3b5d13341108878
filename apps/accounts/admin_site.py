"""The Django admin site: django-otp's ``OTPAdminSite`` (only a session verified with the second
factor may use it), signing in through the portal's own login page."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django_otp.admin import OTPAdminSite


class ImageMedixAdminSite(OTPAdminSite):
    site_header = "ImageMedix administration"
    site_title = "ImageMedix admin"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)  # OTPAdminSite's own default name is "otpadmin"; URLs say "admin:"

    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        """Anonymous: the portal's login (password, then the code). Signed in and allowed: the
        index. Signed in without admin access: say so, rather than offer a second login form."""
        next_url = request.GET.get("next") or reverse("admin:index", current_app=self.name)
        if not request.user.is_authenticated:
            return redirect_to_login(next_url)
        if self.has_permission(request):
            return redirect(next_url)
        return render(request, "accounts/admin_no_access.html", status=403)
