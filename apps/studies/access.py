"""The authorization vocabulary: who is an active doctor here, who cares for which patient, who
sees which patients and studies. Views, the API, consumers, receivers, services and tasks all come
here (and the reports and chat access modules build on it); none of them writes these rules out
on its own.

The rules, within the active hospital scope:
* an **active doctor** of a hospital has an active ``doctor`` membership there and an active
  account (``is_active_doctor``, ``active_doctor_ids``);
* a doctor **cares for** a patient while a ``CareAssignment`` row links them and the doctor is an
  active doctor of the patient's hospital (``cares_for``, ``care_team``, ``caseload``). The
  assignment row is the one source of truth for the care relation;
* hospital admins see every patient and study of their hospital;
* doctors see the patients they care for and their studies;
* patients see their own patient record, and no studies (they read signed reports instead).

Anything else answers 404, exactly like an object that does not exist.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from apps.accounts.models import Hospital, Membership, Role
from apps.accounts.tenancy import Tenant, roles_in

from .models import CareAssignment, Patient, Study


def active_doctor_ids(hospital: Hospital | int) -> QuerySet[Membership]:
    """Ids (``user_id`` values) of the hospital's active doctors, for ``pk__in`` filters."""
    return Membership.objects.filter(hospital=hospital, role=Role.DOCTOR, is_active=True, user__is_active=True).values(
        "user_id"
    )


def is_active_doctor(user: Any, hospital: Hospital | int) -> bool:
    """``user`` is an active doctor of ``hospital`` right now."""
    return active_doctor_ids(hospital).filter(user_id=user.pk).exists()


def cares_for(doctor: Any, patient: Patient) -> bool:
    """``doctor`` is an active doctor of the patient's hospital and assigned to the patient."""
    return (
        CareAssignment.objects.filter(hospital_id=patient.hospital_id, patient=patient, doctor_id=doctor.pk)
        .filter(doctor_id__in=active_doctor_ids(patient.hospital_id))
        .exists()
    )


def care_team(hospital_id: int, patient_id: int) -> list[int]:
    """Ids of the active doctors caring for the patient now, in id order."""
    return sorted(
        CareAssignment.objects.filter(
            hospital_id=hospital_id, patient_id=patient_id, doctor_id__in=active_doctor_ids(hospital_id)
        ).values_list("doctor_id", flat=True)
    )


def visible_patients(tenant: Tenant) -> QuerySet[Patient]:
    base = Patient.objects.filter(hospital=tenant.hospital)
    if tenant.is_admin:
        return base
    visible = Patient.objects.none()
    if tenant.is_doctor:
        visible = visible | caseload(tenant)
    if tenant.is_patient:
        visible = visible | base.filter(user=tenant.user)
    return visible.distinct()


def caseload(tenant: Tenant) -> QuerySet[Patient]:
    """Patients under the clinician's care (all of the hospital's for its admins)."""
    base = Patient.objects.filter(hospital=tenant.hospital)
    if tenant.is_admin:
        return base
    if tenant.is_doctor:
        return base.filter(care_assignments__doctor=tenant.user)
    return Patient.objects.none()


def visible_studies(tenant: Tenant) -> QuerySet[Study]:
    base = Study.objects.filter(hospital=tenant.hospital)
    if tenant.is_admin:
        return base
    if tenant.is_doctor:
        return base.filter(patient__in=caseload(tenant))
    return Study.objects.none()


def may_see_study(user: Any, study: Study) -> bool:
    """``user`` may see ``study`` now, by the same rules as every page (for code that has a user
    and an object but no request, such as a receiver deciding who hears about a study)."""
    tenant = Tenant(hospital=study.hospital, user=user, roles=roles_in(user, study.hospital))
    return visible_studies(tenant).filter(pk=study.pk).exists()


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
