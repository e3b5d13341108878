"""Forms of the review screen: the doctor's read and report (one form), and an amendment."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from imagemedix.forms import NamedErrorsMixin

from .models import FINAL_LABEL_MAX, Report

OTHER = "__other__"


class ReportForm(NamedErrorsMixin, forms.Form):
    """The doctor's read and report, one form: the final label (it starts empty: the doctor
    chooses, with the AI's suggestion shown beside it), findings, impression, an optional comment
    on the AI read (recorded with their read when they sign), and on an amendment its reason."""

    final_label = forms.ChoiceField(label="Final label", required=False)
    final_label_other = forms.CharField(
        label="Other final label",
        required=False,
        max_length=FINAL_LABEL_MAX,
        help_text="Only if you chose “Other” above.",
    )
    findings = forms.CharField(
        label="Findings", required=False, max_length=20000, widget=forms.Textarea(attrs={"rows": 5})
    )
    impression = forms.CharField(
        label="Impression", required=False, max_length=10000, widget=forms.Textarea(attrs={"rows": 3})
    )
    ai_comment = forms.CharField(
        label="Comment on the AI read (optional)",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="For example why you disagree. It goes with your read to the model's feedback.",
    )
    amendment_reason = forms.CharField(
        label="Reason for the amendment",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Shown in the report's PDF and its history.",
    )

    def __init__(
        self, *args: Any, labels: list[tuple[str, str]], ai_read: bool = True, amending: bool = False, **kwargs: Any
    ) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.label_codes = {code for code, _ in labels}
        cast(forms.ChoiceField, self.fields["final_label"]).choices = [
            ("", "Choose your conclusion…"),
            *labels,
            (OTHER, "Other (type below)"),
        ]
        if not ai_read:
            del self.fields["ai_comment"]
        if not amending:
            del self.fields["amendment_reason"]

    @classmethod
    def initial_for(cls, report: Report | None, labels: list[tuple[str, str]]) -> dict[str, str]:
        """The draft's values; a new report starts with every field empty, the label included."""
        if report is None:
            return {}
        initial = {
            "findings": report.findings,
            "impression": report.impression,
            "final_label": report.final_label,
            "ai_comment": report.ai_comment,
            "amendment_reason": report.amendment_reason,
        }
        if report.final_label and report.final_label not in {c for c, _ in labels}:
            initial.update(final_label=OTHER, final_label_other=report.final_label)
        return initial

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        choice = data.get("final_label") or ""
        if choice == OTHER:
            other = (data.get("final_label_other") or "").strip()
            if not other:
                self.add_error("final_label_other", "Type the final label, or pick one from the list.")
            data["label"] = other
        else:
            data["label"] = choice
        return data


class AmendForm(NamedErrorsMixin, forms.Form):
    """Amend a signed report: a new version, for a reason that the PDF and the history show."""

    reason = forms.CharField(
        label="Reason for the amendment",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Say why this report is being amended."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        kwargs.setdefault("auto_id", "amend_%s")
        super().__init__(*args, **kwargs)
