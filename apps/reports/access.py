"""Who sees which reports. Views and downloads come here; none of them filters reports on
their own.

Within the active hospital scope:
* hospital admins see every report of their hospital, drafts included;
* doctors see the reports (drafts included) of the patients assigned to them;
* a patient user sees the signed versions of their own reports (current or superseded by an
  amendment), never drafts, never AI-only results, never anybody else's.

Anything else answers 404, exactly like a report that does not exist.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from apps.accounts.tenancy import Tenant
from apps.studies.access import caseload
from apps.studies.models import Study

from .models import Report, ReportStatus

SIGNED_STATES = (ReportStatus.SIGNED, ReportStatus.AMENDED)


def clinical_reports(tenant: Tenant) -> QuerySet[Report]:
    """Reports the staff side may read: all for admins, the caseload's for doctors."""
    base = Report.objects.filter(hospital=tenant.hospital)
    if tenant.is_admin:
        return base
    if tenant.is_doctor:
        return base.filter(patient__in=caseload(tenant))
    return Report.objects.none()


def patient_reports(tenant: Tenant) -> QuerySet[Report]:
    """The patient user's own signed reports (their portal)."""
    if not tenant.is_patient:
        return Report.objects.none()
    return Report.objects.filter(hospital=tenant.hospital, patient__user=tenant.user, status__in=SIGNED_STATES)


def visible_reports(tenant: Tenant) -> QuerySet[Report]:
    """Everything the user may read or download, whatever their roles here."""
    return (clinical_reports(tenant) | patient_reports(tenant)).distinct()


def get_report(tenant: Tenant, pk: int) -> Report:
    report = _with_related(visible_reports(tenant)).filter(pk=pk).first()
    if report is None:
        raise Http404("No such report.")
    return report


def get_clinical_report(tenant: Tenant, pk: int) -> Report:
    report = _with_related(clinical_reports(tenant)).filter(pk=pk).first()
    if report is None:
        raise Http404("No such report.")
    return report


def get_patient_report(tenant: Tenant, pk: int) -> Report:
    report = _with_related(patient_reports(tenant)).filter(pk=pk).first()
    if report is None:
        raise Http404("No such report.")
    return report


def reports_of_study(study: Study) -> QuerySet[Report]:
    """Every version of a study's report, newest first. Only call with a study obtained through
    ``apps.studies.access`` (the caller has already been allowed to see it)."""
    return _with_related(Report.objects.filter(hospital_id=study.hospital_id, study=study)).order_by("-version")


def _with_related(qs: QuerySet[Report]) -> QuerySet[Report]:
    return qs.select_related("patient", "study", "author", "signed_by", "hospital", "supersedes")
