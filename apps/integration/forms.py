"""Forms of the hospital admin's integration pages."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from django import forms
from django.db.models import QuerySet

from apps.studies.forms import PatientChoiceField, PatientForm, PlainLabelsMixin
from apps.studies.models import Patient, Sex

from .models import DicomStudy


class CredentialForm(PlainLabelsMixin, forms.Form):
    name = forms.CharField(
        max_length=100,
        label="Name",
        help_text="The system that will use it, e.g. “Orthanc, radiology department”.",
    )


class LinkPatientForm(PlainLabelsMixin, forms.Form):
    """File an unmatched study under an existing patient of this hospital."""

    patient = PatientChoiceField(
        queryset=Patient.objects.none(),
        empty_label="Choose a patient…",
        error_messages={"invalid_choice": "Please choose a patient of this hospital."},
    )

    def __init__(self, *args: Any, patients: QuerySet[Patient], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["patient"]).queryset = patients


def _dicom_date(value: str) -> dt.date | None:
    try:
        return dt.datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        return None


def initial_patient_fields(dicom_study: DicomStudy) -> dict[str, Any]:
    """What the sender said about the patient, as the new-patient form's starting values."""
    family, _, rest = dicom_study.sent_patient_name.partition("^")
    given = rest.split("^")[0]
    sex = dicom_study.sent_sex.upper()[:1]
    return {
        "mrn": dicom_study.sent_patient_id,
        "family_name": family.strip().title() if family.isupper() else family.strip(),
        "given_name": given.strip().title() if given.isupper() else given.strip(),
        "birth_date": _dicom_date(dicom_study.sent_birth_date),
        "sex": sex if sex in Sex.values else Sex.UNKNOWN,
    }


class NewPatientForm(PatientForm):
    """Create the patient the study belongs to (the same checks as the new-patient page)."""

    prefix = "new"
