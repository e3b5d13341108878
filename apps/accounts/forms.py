"""Forms of the account pages. The login form has one message for every failure, so e-mail
addresses cannot be probed."""

from __future__ import annotations

from typing import Any, cast

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
        cast(forms.ModelChoiceField, self.fields["hospital"]).queryset = clinical_hospitals(user)


class CodeForm(forms.Form):
    """A code from the authenticator app, or one of the recovery codes."""

    code = forms.CharField(
        label="Code",
        max_length=40,
        help_text="The 6-digit code your authenticator app shows now, or one of your recovery codes.",
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "text", "autofocus": True, "spellcheck": "false"}
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class SetupCodeForm(CodeForm):
    """The first code of a new authenticator, proving it was set up right."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["code"].help_text = "The 6-digit code the app shows for ImageMedix after you added it."
        self.fields["code"].widget.attrs["inputmode"] = "numeric"


class ReauthForm(forms.Form):
    """Confirm it is you: the password, and the authenticator code where there is one."""

    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password", "autofocus": True}),
    )
    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=40,
        help_text="Or one of your recovery codes.",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "spellcheck": "false"}),
    )

    def __init__(self, *args: Any, with_code: bool, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        if not with_code:
            del self.fields["code"]


class AccountFromInvitationForm(forms.Form):
    """A new account for the invited e-mail address: a name and a password (the password rules of
    every other page)."""

    full_name = forms.CharField(
        label="Your full name", max_length=200, widget=forms.TextInput(attrs={"autocomplete": "name"})
    )
    password1 = forms.CharField(
        label="Choose a password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 10 characters; not a common password, and not like your name or e-mail.",
    )
    password2 = forms.CharField(
        label="The same password again",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: Any, email: str, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.email = email

    def clean(self) -> dict[str, Any]:
        from django.contrib.auth.password_validation import validate_password

        from .models import User

        super().clean()
        data = self.cleaned_data
        first, second = data.get("password1"), data.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords are not the same.")
        elif first:
            try:
                validate_password(first, User(email=self.email, full_name=data.get("full_name", "")))
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data
