"""The worklist: every study the clinician sees, with one reporting state each, filtered, counted
and sorted in the database.

``with_reporting_state`` is the one place a study's reporting state is decided, as a queryset
annotation (correlated subqueries on its reports and its newest AI read), so a page of the
worklist costs the same few queries for 10 studies or 10,000 (tests/reports/test_worklist.py
counts them).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeVar, cast

from django import forms
from django.contrib.auth import get_user_model
from django.db import models
from django.db.models import Case, Count, Exists, OuterRef, Q, QuerySet, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.tenancy import Tenant
from apps.diagnosis.models import NO_FINDING_LABELS, Diagnosis
from apps.studies.access import active_doctor_ids, care_rows
from apps.studies.models import Modality, Study, StudyStatus
from imagemedix.forms import NamedErrorsMixin

from .models import Report, ReportStatus

_Studies = TypeVar("_Studies", bound=QuerySet[Study])


class ReportingState(models.TextChoices):
    """Where a study stands, from upload to signed report (first match wins, top to bottom)."""

    ENTERED_IN_ERROR = "entered_in_error", "Entered in error"
    DRAFT = "draft", "Draft"
    AMENDED = "amended", "Amended"
    SIGNED = "signed", "Signed"
    FAILED = "failed", "AI read failed – needs report"
    REFUSED = "refused", "Not read by the AI – needs report"
    NEEDS_REPORT = "needs_report", "AI ready – needs report"
    AWAITING_AI = "awaiting_ai", "Awaiting AI"


#: The order of the states on the page (the work first, the finished last).
STATE_ORDER = [
    ReportingState.NEEDS_REPORT,
    ReportingState.REFUSED,
    ReportingState.FAILED,
    ReportingState.DRAFT,
    ReportingState.AWAITING_AI,
    ReportingState.SIGNED,
    ReportingState.AMENDED,
    ReportingState.ENTERED_IN_ERROR,
]

#: Triage tiers of the newest AI read: the AI suggests a finding, is unsure, suggests none, or
#: made no read (refused, failed, not yet).
TRIAGE_FINDING, TRIAGE_UNSURE, TRIAGE_NO_FINDING, TRIAGE_NO_READ = 0, 1, 2, 3


def with_reporting_state(studies: _Studies) -> _Studies:
    """``studies`` annotated with ``reporting_state`` (a ``ReportingState`` value) and
    ``triage`` (a tier of the newest AI read, for the "AI-suspected findings first" order)."""
    # Unordered (Report's default order would join the study again) and only EXISTS tests, which
    # PostgreSQL answers from the partial unique indexes on draft and signed reports.
    reports = Report.objects.filter(hospital_id=OuterRef("hospital_id"), study_id=OuterRef("pk")).order_by()
    newest_read = Diagnosis.objects.filter(hospital_id=OuterRef("hospital_id"), study_id=OuterRef("pk")).order_by(
        "-created_at", "-pk"
    )
    tier = newest_read.annotate(
        tier=Case(
            When(refused=True, then=Value(TRIAGE_NO_READ)),
            When(indeterminate=True, then=Value(TRIAGE_UNSURE)),
            When(label__in=NO_FINDING_LABELS, then=Value(TRIAGE_NO_FINDING)),
            default=Value(TRIAGE_FINDING),
        )
    ).values("tier")[:1]
    return studies.annotate(
        has_draft=Exists(reports.filter(status=ReportStatus.DRAFT)),
        has_amendment=Exists(reports.filter(status=ReportStatus.SIGNED, version__gt=1)),
        has_signed=Exists(reports.filter(status=ReportStatus.SIGNED)),
        triage=Coalesce(Subquery(tier), Value(TRIAGE_NO_READ)),
    ).annotate(
        reporting_state=Case(
            *(When(condition, then=Value(state.value)) for state, condition in _STATE_RULES),
            default=Value(ReportingState.AWAITING_AI.value),
            output_field=models.CharField(),
        )
    )


#: The reporting state's rules, in order (the first that holds decides; none: awaiting AI), over
#: the annotations of ``with_reporting_state``. Both the ``reporting_state`` annotation and the
#: filter by state (``in_state``) are built from this one list.
_STATE_RULES = [
    (ReportingState.ENTERED_IN_ERROR, Q(entered_in_error_at__isnull=False)),
    (ReportingState.DRAFT, Q(has_draft=True)),
    (ReportingState.AMENDED, Q(has_amendment=True)),
    (ReportingState.SIGNED, Q(has_signed=True)),
    (ReportingState.FAILED, Q(status=StudyStatus.FAILED)),
    (ReportingState.REFUSED, Q(status=StudyStatus.REFUSED)),
    (ReportingState.NEEDS_REPORT, Q(status__in=[StudyStatus.DONE, StudyStatus.UNSURE])),
]


def in_state(state: str) -> Q:
    """The filter for one reporting state, as plain conditions (the database estimates those well,
    unlike a comparison with the CASE expression): its rule holds and no earlier rule does."""
    earlier = Q()
    for candidate, condition in _STATE_RULES:
        if candidate == state:
            return condition & ~earlier if earlier else condition
        earlier |= condition
    return ~earlier


SORTS = {
    "newest": ("Newest first", ["-created_at", "-pk"]),
    "oldest": ("Oldest first", ["created_at", "pk"]),
    "triage": ("AI-suspected findings first (a triage aid)", ["triage", "created_at", "pk"]),
    "patient": ("Patient name", ["patient__family_name", "patient__given_name", "-created_at", "-pk"]),
}


class DoctorChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: User) -> str:
        return obj.display_name


class WorklistForm(NamedErrorsMixin, forms.Form):
    """The worklist's filters and order (a GET form; every field is optional)."""

    state = forms.ChoiceField(label="Reporting state", required=False)
    modality = forms.ChoiceField(label="Image type", required=False)
    doctor = DoctorChoiceField(
        label="Doctor", required=False, queryset=get_user_model().objects.none(), empty_label="Any doctor"
    )
    uploaded_from = forms.DateField(
        label="Uploaded from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    uploaded_to = forms.DateField(label="Uploaded to", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    sort = forms.ChoiceField(label="Order", required=False, choices=[(k, v[0]) for k, v in SORTS.items()])

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["state"]).choices = [("", "Every state but entered in error")] + [
            (s.value, s.label) for s in STATE_ORDER
        ]
        cast(forms.ChoiceField, self.fields["modality"]).choices = [("", "Any image type")] + [
            (m.value, m.label) for m in Modality if m != Modality.UNKNOWN
        ]
        doctors = cast(forms.ModelChoiceField, self.fields["doctor"])
        doctors.queryset = (
            get_user_model().objects.filter(pk__in=active_doctor_ids(tenant.hospital)).order_by("full_name", "email")
        )

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        start, end = data.get("uploaded_from"), data.get("uploaded_to")
        if start and end and start > end:
            self.add_error("uploaded_to", "It must be on or after the “Uploaded from” date.")
        return data


def worklist_studies(tenant: Tenant, filters: dict[str, Any]) -> tuple[QuerySet[Study], dict[str, int]]:
    """The tenant's studies with their reporting state, filtered and ordered by ``filters`` (a
    valid ``WorklistForm``'s cleaned data), and the count of each state under the other filters.

    Studies entered in error leave the worklist: they are listed only when asked for by state.
    """
    studies = with_reporting_state(Study.objects.visible_to(tenant))
    if filters.get("modality"):
        studies = studies.filter(modality=filters["modality"])
    if filters.get("doctor"):
        studies = studies.filter(
            Exists(care_rows(tenant.hospital).filter(patient=OuterRef("patient"), doctor=filters["doctor"]))
        )
    if filters.get("uploaded_from"):
        studies = studies.filter(created_at__gte=_day_start(filters["uploaded_from"]))
    if filters.get("uploaded_to"):
        studies = studies.filter(created_at__lt=_day_start(filters["uploaded_to"] + dt.timedelta(days=1)))
    # reporting_state is with_reporting_state's annotation, which the django-stubs plugin cannot see.
    counts = dict(studies.order_by().values_list("reporting_state").annotate(n=Count("pk")))  # type: ignore[misc]
    state = filters.get("state")
    if state:
        studies = studies.filter(in_state(state))
    else:
        studies = studies.in_record()
    order = SORTS[filters.get("sort") or "newest"][1]
    return studies.select_related("patient", "uploaded_by").order_by(*order), counts


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))
