"""Forms of the clinician pages. Choice fields are always limited to what the acting user may
see (their caseload, their hospital's doctors), so a tampered POST cannot reach other rows."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from django import forms
from django.contrib.auth import get_user_model
from django.core.validators import RegexValidator
from django.db.models import QuerySet
from django.utils.formats import date_format
from django.utils.timezone import localtime

from apps.accounts.models import Hospital, Role, User
from imagemedix.forms import NamedErrorsMixin

from .access import active_doctor_ids
from .models import Patient, Sex
from .search import matching

ACCEPT = ".png,.jpg,.jpeg,.dcm,image/png,image/jpeg,application/dicom"


class PlainLabelsMixin(NamedErrorsMixin):
    """Labels without Django's trailing colon (the layout sets labels on their own line), and
    error messages that name their field."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class PatientChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Patient) -> str:
        return f"{obj.family_name.upper()}, {obj.given_name} — MRN {obj.mrn}"


class DoctorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return f"{obj.display_name} ({obj.email})"


class UploadForm(PlainLabelsMixin, forms.Form):
    """A patient of the caseload and an image file. The patient is found by typing: the page's
    combobox (static/js/combobox.js) fills ``patient`` with the chosen id; without script, a
    name or MRN that matches exactly one patient is enough. The file's content is validated by
    ``apps.studies.validation`` in the view, not here: the form only checks that one was sent.
    ``confirm_duplicate`` is ticked to upload a file this patient already has."""

    patient_search = forms.CharField(
        label="Patient",
        required=False,
        max_length=100,
        help_text="Type a name or MRN, then choose the patient from the list.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    patient = forms.ModelChoiceField(
        queryset=Patient.objects.none(),
        required=False,
        widget=forms.HiddenInput,
        error_messages={"invalid_choice": "Choose a patient from your caseload."},
    )
    image = forms.FileField(
        label="Image file",
        help_text="PNG, JPEG or DICOM of a chest X-ray or brain MRI, up to 50 MB.",
        error_messages={"required": "Choose an image file to upload.", "empty": "The file is empty."},
        widget=forms.ClearableFileInput(attrs={"accept": ACCEPT}),
    )
    confirm_duplicate = forms.BooleanField(label="Upload this file again", required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, patients: QuerySet[Patient], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.patients = patients
        cast(forms.ModelChoiceField, self.fields["patient"]).queryset = patients

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if self.errors.pop("patient", None):  # a tampered or stale id: said at the visible field
            self.add_error("patient_search", "Choose a patient from your caseload.")
            return data
        if data.get("patient"):
            return data
        typed = (data.get("patient_search") or "").strip()
        if not typed:
            self.add_error("patient_search", "Type a name or MRN and choose the patient this image belongs to.")
            return data
        found = list(matching(self.patients, typed)[:2])
        if len(found) == 1:
            data["patient"] = found[0]
        elif found:
            self.add_error(
                "patient_search", f"Several patients match “{typed}”: choose one from the list, or type the MRN."
            )
        else:
            self.add_error("patient_search", f"No patient on your caseload matches “{typed}”.")
        return data

    def ask_to_confirm_duplicate(self, earlier: list[Any]) -> None:
        """The file is one this patient already has: say so, and offer the box to upload it again."""
        self.fields["confirm_duplicate"].widget = forms.CheckboxInput()
        when = ", ".join(date_format(localtime(s.created_at), "j M Y, H:i") for s in earlier[:3])
        self.add_error(
            "confirm_duplicate",
            f"this patient already has this exact file (uploaded {when}). Tick the box to upload it anyway.",
        )


class EnteredInErrorForm(PlainLabelsMixin, forms.Form):
    """Mark a study as entered in error, saying why (kept in the audit trail)."""

    reason = forms.CharField(
        label="Why was this study entered in error?",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="For example “Wrong patient” or “Not a medical image”. The study is kept on record.",
        error_messages={"required": "Say why this study was entered in error."},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "error_%s")
        super().__init__(*args, **kwargs)


class PatientForm(PlainLabelsMixin, forms.ModelForm):
    """A new patient record. The MRN must be new in this hospital."""

    class Meta:
        model = Patient
        fields = ["mrn", "given_name", "family_name", "birth_date", "sex"]
        # type=date inputs take ISO dates whatever the locale (else an initial value shows empty).
        widgets = {"birth_date": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")}
        labels = {"mrn": "Medical record number (MRN)"}

    def __init__(self, *args: Any, hospital: Hospital, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hospital = hospital
        cast(forms.ChoiceField, self.fields["sex"]).choices = Sex.choices

    def clean_mrn(self) -> str:
        mrn = self.cleaned_data["mrn"].strip()
        if Patient.objects.filter(hospital=self.hospital, mrn__iexact=mrn).exists():
            raise forms.ValidationError("A patient with this MRN already exists in this hospital.")
        return mrn

    def clean_birth_date(self) -> dt.date:
        value = self.cleaned_data["birth_date"]
        if value > dt.date.today():
            raise forms.ValidationError("The birth date cannot be in the future.")
        return value


class SearchForm(PlainLabelsMixin, forms.Form):
    q = forms.CharField(required=False, max_length=100, label="Search by name or MRN")


class InviteForm(PlainLabelsMixin, forms.Form):
    """Invite a person by e-mail to take a role here. Nothing is looked up: the person accepts with
    their own account, or creates one from the e-mailed link."""

    email = forms.EmailField(label="E-mail address")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DOCTOR)

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class AssignmentForm(PlainLabelsMixin, forms.Form):
    """Put a patient of this hospital on a doctor's caseload."""

    patient = PatientChoiceField(queryset=Patient.objects.none(), empty_label="Choose a patient…")
    doctor = DoctorChoiceField(queryset=get_user_model().objects.none(), empty_label="Choose a doctor…")

    def __init__(self, *args: Any, hospital: Hospital, patients: QuerySet[Patient], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ModelChoiceField, self.fields["patient"]).queryset = patients
        cast(DoctorChoiceField, self.fields["doctor"]).queryset = get_user_model().objects.filter(
            pk__in=active_doctor_ids(hospital)
        )


class AuditFilterForm(PlainLabelsMixin, forms.Form):
    """Filters of the hospital admin's audit log (and its CSV export). Every field is optional;
    ``patient`` is an MRN of this hospital, resolved to the record in ``clean_patient``."""

    date_from = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    actor = forms.CharField(required=False, max_length=254, label="Who (name or e-mail)")
    action = forms.CharField(
        required=False,
        max_length=60,
        label="Event",
        validators=[RegexValidator(r"^[a-z_]+(\.[a-z_]+)+$", "Choose an event from the list.")],
        widget=forms.Select,
    )
    patient = forms.CharField(required=False, max_length=40, label="Patient MRN")

    def __init__(self, *args: Any, hospital: Hospital, actions: list[str], **kwargs: Any) -> None:
        """``actions``: the events this hospital has, offered in the list; any well-formed event
        name is accepted (one with no events yet selects nothing)."""
        super().__init__(*args, **kwargs)
        self.hospital = hospital
        wanted = self.data.get("action", "") if self.is_bound else ""
        names = sorted({*actions, wanted} - {""})
        self.fields["action"].widget.choices = [("", "All events"), *((a, a) for a in names)]

    def clean_patient(self) -> Patient | None:
        mrn = self.cleaned_data["patient"].strip()
        if not mrn:
            return None
        patient = Patient.objects.filter(hospital=self.hospital, mrn__iexact=mrn).first()
        if patient is None:
            raise forms.ValidationError("No patient of this hospital has this MRN.")
        return patient

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("date_from"), data.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", "The end date must not be before the start date.")
        return data
