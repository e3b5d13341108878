"""Forms of the account pages. The login form has one message for every failure, so e-mail
addresses cannot be probed."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm

from .models import Hospital
from .tokens import clinical_hospitals

LOGIN_FAILED = "The e-mail address or password is not correct, or the account is temporarily locked."


class LoginForm(AuthenticationForm):
    username = forms.EmailField(
        label="E-mail address", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "username"})
    )
    error_messages = {"invalid_login": LOGIN_FAILED, "inactive": LOGIN_FAILED}


class ApiTokenForm(forms.Form):
    """A new API token: what it is for, and optionally the one hospital it opens."""

    name = forms.CharField(
        label="What is this token for?",
        max_length=100,
        required=False,
        help_text="For example “PACS export script”. Shown in the list below, so you can tell tokens apart.",
    )
    hospital = forms.ModelChoiceField(
        queryset=Hospital.objects.none(),
        required=False,
        empty_label="Every hospital I work in",
        label="Hospital",
        help_text="A token bound to one hospital is refused by the API of every other hospital.",
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["hospital"].queryset = clinical_hospitals(user)
