"""Forms of the review screen: the doctor's verdict on the AI read, and the report text."""

from __future__ import annotations

from typing import Any

from django import forms

from .models import Report

OTHER = "__other__"
FINAL_LABEL_MAX = Report._meta.get_field("final_label").max_length


class FeedbackForm(forms.Form):
    """Confirm the AI label, or correct it to another of the specialist's labels.

    On an ``indeterminate`` read the AI suggested no label, so there is nothing to confirm: the
    doctor chooses their own label among all the specialist's classes (recorded as a correction).
    """

    action = forms.ChoiceField(
        label="Your read of the AI result",
        choices=[("confirm", "I agree with the AI label"), ("correct", "I disagree: the correct label is…")],
        widget=forms.RadioSelect,
    )
    corrected_label = forms.ChoiceField(label="Correct label", required=False)
    comment = forms.CharField(
        label="Comment (optional)", required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(
        self, *args: Any, labels: list[tuple[str, str]], ai_label: str = "", indeterminate: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.ai_label = ai_label
        self.indeterminate = indeterminate
        if indeterminate:
            self.fields["action"].choices = [("correct", "Record my label")]
            self.fields["action"].required = False
            self.fields["action"].widget = forms.HiddenInput()
            self.fields["action"].initial = "correct"
            self.fields["corrected_label"].label = "Your label"
            self.fields["corrected_label"].choices = [("", "Choose a label"), *labels]
        else:
            self.fields["corrected_label"].choices = [("", "Choose a label")] + [
                (code, name) for code, name in labels if code != ai_label
            ]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if self.indeterminate:
            data["action"] = "correct"
            if not data.get("corrected_label"):
                self.add_error("corrected_label", "Please choose the label you read on the image.")
        elif data.get("action") == "correct" and not data.get("corrected_label"):
            self.add_error("corrected_label", "Please choose the label you believe is correct.")
        return data


class ReportForm(forms.Form):
    """The doctor's report: free-text findings and impression, and a final label."""

    findings = forms.CharField(
        label="Findings", required=False, max_length=20000, widget=forms.Textarea(attrs={"rows": 6})
    )
    impression = forms.CharField(
        label="Impression", required=False, max_length=10000, widget=forms.Textarea(attrs={"rows": 3})
    )
    final_label = forms.ChoiceField(label="Final label", required=False)
    final_label_other = forms.CharField(
        label="Other final label",
        required=False,
        max_length=FINAL_LABEL_MAX,
        help_text="Only if you chose “Other” above.",
    )

    def __init__(self, *args: Any, labels: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.label_codes = {code for code, _ in labels}
        self.fields["final_label"].choices = [("", "Not decided yet"), *labels, (OTHER, "Other (type below)")]

    @classmethod
    def initial_for(cls, report: Report | None, labels: list[tuple[str, str]], suggested: str = "") -> dict[str, str]:
        if report is None:
            return {"final_label": suggested if suggested in {c for c, _ in labels} else ""}
        codes = {c for c, _ in labels}
        label = report.final_label
        if label and label not in codes:
            return {
                "findings": report.findings,
                "impression": report.impression,
                "final_label": OTHER,
                "final_label_other": label,
            }
        return {"findings": report.findings, "impression": report.impression, "final_label": label}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        choice = data.get("final_label") or ""
        if choice == OTHER:
            other = (data.get("final_label_other") or "").strip()
            if not other:
                self.add_error("final_label_other", "Please type the final label, or pick one from the list.")
            data["label"] = other
        else:
            data["label"] = choice
        return data
