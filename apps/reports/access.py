"""Fetching reports for views and downloads: one object or 404, always through
``Report.objects.visible_to`` / ``clinical_for`` / ``signed_for_patient`` (the rules are in
``apps/reports/models.py`` and ``apps/studies/access.py``).

Anything the user may not see answers 404, exactly like a report that does not exist.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from apps.accounts.tenancy import Tenant
from apps.studies.models import Study

from .models import Report, ReportStatus


def get_report(tenant: Tenant, pk: int) -> Report:
    return _one(Report.objects.visible_to(tenant), pk)


def get_clinical_report(tenant: Tenant, pk: int) -> Report:
    return _one(Report.objects.clinical_for(tenant), pk)


def get_patient_report(tenant: Tenant, pk: int) -> Report:
    return _one(Report.objects.signed_for_patient(tenant), pk)


def get_withdrawn_patient_report(tenant: Tenant, pk: int) -> Report:
    """One of the patient user's own signed reports whose study was entered in error (404 otherwise)."""
    return _one(Report.objects.withdrawn_for_patient(tenant), pk)


def reports_of_study(tenant: Tenant, study: Study) -> QuerySet[Report]:
    """Every version of a study's report the user may read, newest first."""
    return _with_related(Report.objects.visible_to(tenant).filter(study=study)).order_by("-version")


def _one(qs: QuerySet[Report], pk: int) -> Report:
    report = _with_related(qs).filter(pk=pk).first()
    if report is None:
        raise Http404("No such report.")
    return report


def _with_related(qs: QuerySet[Report]) -> QuerySet[Report]:
    return qs.select_related("patient", "study", "author", "signed_by", "hospital", "supersedes")


def signed_report_of(tenant: Tenant, study: Study) -> Report | None:
    """The study's valid signed report (its current signed version) if the user may read it."""
    return _with_related(Report.objects.visible_to(tenant).filter(study=study, status=ReportStatus.SIGNED)).first()
