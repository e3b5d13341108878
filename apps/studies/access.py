"""Who sees which patients and studies. Views, the API, consumers and tasks all come here;
none of them filters tenant data on its own.

Within the active hospital scope:
* hospital admins see every patient and study of their hospital;
* doctors see the patients they are assigned to (guardian object permission) and their studies;
* patients see their own patient record, and no studies (they read signed reports instead).

Anything else answers 404, exactly like an object that does not exist.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from apps.accounts.tenancy import Tenant

from .models import CareAssignment, Patient, Study
from .permissions import patients_with_perm


def visible_patients(tenant: Tenant) -> QuerySet[Patient]:
    base = Patient.objects.filter(hospital=tenant.hospital)
    if tenant.is_admin:
        return base
    visible = Patient.objects.none()
    if tenant.is_doctor:
        visible = visible | patients_with_perm(tenant.user, base)
    if tenant.is_patient:
        visible = visible | base.filter(user=tenant.user)
    return visible.distinct()


def caseload(tenant: Tenant) -> QuerySet[Patient]:
    """Patients under the clinician's care (all of the hospital's for its admins)."""
    base = Patient.objects.filter(hospital=tenant.hospital)
    if tenant.is_admin:
        return base
    if tenant.is_doctor:
        return patients_with_perm(tenant.user, base)
    return Patient.objects.none()


def visible_studies(tenant: Tenant) -> QuerySet[Study]:
    base = Study.objects.filter(hospital=tenant.hospital)
    if tenant.is_admin:
        return base
    if tenant.is_doctor:
        return base.filter(patient__in=caseload(tenant))
    return Study.objects.none()


def get_patient(tenant: Tenant, pk: int) -> Patient:
    patient = visible_patients(tenant).filter(pk=pk).first()
    if patient is None:
        raise Http404("No such patient.")
    return patient


def get_caseload_patient(tenant: Tenant, pk: int) -> Patient:
    patient = caseload(tenant).filter(pk=pk).first()
    if patient is None:
        raise Http404("No such patient.")
    return patient


def get_study(tenant: Tenant, pk: int) -> Study:
    study = visible_studies(tenant).select_related("patient", "uploaded_by").filter(pk=pk).first()
    if study is None:
        raise Http404("No such study.")
    return study


def care_assignments(tenant: Tenant) -> QuerySet[CareAssignment]:
    """The hospital's doctor-patient assignments: hospital admins manage them all, nobody else any."""
    if not tenant.is_admin:
        return CareAssignment.objects.none()
    return CareAssignment.objects.filter(hospital=tenant.hospital)


def get_care_assignment(tenant: Tenant, pk: int) -> CareAssignment:
    assignment = care_assignments(tenant).select_related("patient", "doctor").filter(pk=pk).first()
    if assignment is None:
        raise Http404("No such assignment.")
    return assignment
