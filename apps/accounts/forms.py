"""Login form: one message for every failure, so e-mail addresses cannot be probed."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm

LOGIN_FAILED = "The e-mail address or password is not correct, or the account is temporarily locked."


class LoginForm(AuthenticationForm):
    username = forms.EmailField(
        label="E-mail address", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "username"})
    )
    error_messages = {"invalid_login": LOGIN_FAILED, "inactive": LOGIN_FAILED}
