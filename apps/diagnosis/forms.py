"""The models dashboard's confirmation form (apps/diagnosis/deployments.py does the work)."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.studies.forms import PlainLabelsMixin


class DeploymentActionForm(PlainLabelsMixin, forms.Form):
    """Confirm one step of a version in this hospital; the A/B step also asks for the share."""

    percent = forms.IntegerField(
        label="Share of this hospital's studies read by this version (%)",
        min_value=1,
        max_value=100,
        required=False,
    )
    note = forms.CharField(label="Reason (kept in the history)", max_length=500, required=False, widget=forms.TextInput)
    confirm = forms.BooleanField(label="I have read what this changes and want to go ahead", required=True)

    def __init__(self, *args: Any, action: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.action = action
        if action == "ab":
            self.fields["percent"].required = True
        else:
            del self.fields["percent"]


class AcknowledgeAlertForm(PlainLabelsMixin, forms.Form):
    note = forms.CharField(
        label="What was found or done (kept with the alert)", max_length=500, required=False, widget=forms.TextInput
    )
