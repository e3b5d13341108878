"""The authorization vocabulary: who is an active doctor here, who cares for which patient, and
which rows of which model a user sees. Every scoped model's ``visible_to(tenant)`` queryset method
is built from the filters below, and views, the API, consumers, receivers, services, tasks and
the admin all come here (or to ``visible_to``); none of them writes these rules out on its own.

The rules, within the active hospital scope:
* an **active doctor** of a hospital has an active ``doctor`` membership there and an active
  account (``is_active_doctor``, ``active_doctor_ids``); likewise an **active admin**
  (``active_admin_ids``: who is told about drift, who may ask for a research export);
* a doctor **cares for** a patient while a ``CareAssignment`` row links them and the doctor is an
  active doctor of the patient's hospital (``care_rows``, ``cares_for``, ``care_team``,
  ``in_care_of``). The assignment row is the one source of truth for the care relation: there
  is no second record of it (no object permissions) to fall out of step;
* hospital admins see every row of their hospital that is about a patient; doctors see the rows
  about the patients they care for (``clinical_rows``);
* patients see rows about their own patient record(s) where a model allows it (``own_rows``):
  their record, their signed reports, their conversations; never studies or AI reads.

Anything else answers 404, exactly like an object that does not exist.
"""

from __future__ import annotations

from typing import Any, TypedDict

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404

from apps.accounts.models import Hospital, Membership, Role
from apps.accounts.tenancy import Tenant, roles_in

from .models import CareAssignment, Patient, Study


class MemberId(TypedDict):
    """A row of ``Membership.objects.values("user_id")``."""

    user_id: int


#: A filter no row passes (``Q()`` would let every row through).
NOTHING = Q(pk__in=[])


def _active_member_ids(hospital: Hospital | int, role: str) -> QuerySet[Membership, MemberId]:
    return Membership.objects.filter(hospital=hospital, role=role, is_active=True, user__is_active=True).values(
        "user_id"
    )


def active_doctor_ids(hospital: Hospital | int) -> QuerySet[Membership, MemberId]:
    """Ids (``user_id`` values) of the hospital's active doctors, for ``pk__in`` filters."""
    return _active_member_ids(hospital, Role.DOCTOR)


def active_admin_ids(hospital: Hospital | int) -> QuerySet[Membership, MemberId]:
    """Ids (``user_id`` values) of the hospital's active admins (active membership and account)."""
    return _active_member_ids(hospital, Role.HOSPITAL_ADMIN)


def is_active_doctor(user: Any, hospital: Hospital | int) -> bool:
    """``user`` is an active doctor of ``hospital`` right now."""
    return active_doctor_ids(hospital).filter(user_id=user.pk).exists()


def care_rows(hospital: Hospital | int) -> QuerySet[CareAssignment]:
    """The care relation of one hospital: the assignments whose doctor is an active doctor there.
    An assignment of a doctor who left (membership or account switched off) gives no access."""
    return CareAssignment.objects.filter(hospital=hospital, doctor_id__in=active_doctor_ids(hospital))


def cares_for(doctor: Any, patient: Patient) -> bool:
    """``doctor`` is an active doctor of the patient's hospital and assigned to the patient."""
    return care_rows(patient.hospital_id).filter(patient=patient, doctor_id=doctor.pk).exists()


def care_team(hospital_id: int, patient_id: int) -> list[int]:
    """Ids of the active doctors caring for the patient now, in id order."""
    return sorted(care_rows(hospital_id).filter(patient_id=patient_id).values_list("doctor_id", flat=True))


def in_care_of(hospital: Hospital | int, *, doctor: Any, patient: Any) -> Exists:
    """A filter: ``doctor`` cares for ``patient``, where either may be an ``OuterRef`` to the
    filtered row (``patient=OuterRef("pk")`` on Patient, ``doctor=OuterRef("doctor")`` on a
    conversation). An ``Exists`` subquery, so that rows never repeat and filters combine."""
    return Exists(care_rows(hospital).filter(patient=patient, doctor=doctor))


def clinical_rows(tenant: Tenant, patient: str = "patient") -> Q:
    """The staff side's rule for rows about a patient: every row of the hospital for its admins,
    the rows about the patients a doctor cares for, nothing for anyone else. ``patient`` is the
    lookup from the filtered model to its patient ("pk" on Patient itself)."""
    if tenant.is_admin:
        return Q(hospital=tenant.hospital)
    if tenant.is_doctor:
        return Q(hospital=tenant.hospital) & Q(
            in_care_of(tenant.hospital, doctor=tenant.user.pk, patient=OuterRef(patient))
        )
    return NOTHING


def own_rows(tenant: Tenant, patient_user: str = "patient__user") -> Q:
    """The patient side's rule: rows about the user's own patient record(s) in this hospital.
    ``patient_user`` is the lookup from the filtered model to the patient's login ("user" on
    Patient itself)."""
    if not tenant.is_patient:
        return NOTHING
    return Q(hospital=tenant.hospital, **{patient_user: tenant.user.pk})


def caseload(tenant: Tenant) -> QuerySet[Patient]:
    """Patients under the clinician's care (all of the hospital's for its admins)."""
    return Patient.objects.filter(clinical_rows(tenant, patient="pk"))


def may_see_study(user: Any, study: Study) -> bool:
    """``user`` may see ``study`` now, by the same rules as every page (for code that has a user
    and an object but no request, such as a receiver deciding who hears about a study)."""
    tenant = Tenant(hospital=study.hospital, user=user, roles=roles_in(user, study.hospital))
    return Study.objects.visible_to(tenant).filter(pk=study.pk).exists()


def get_patient(tenant: Tenant, pk: int) -> Patient:
    patient = Patient.objects.visible_to(tenant).filter(pk=pk).first()
    if patient is None:
        raise Http404("No such patient.")
    return patient


def get_caseload_patient(tenant: Tenant, pk: int) -> Patient:
    patient = caseload(tenant).filter(pk=pk).first()
    if patient is None:
        raise Http404("No such patient.")
    return patient


def get_study(tenant: Tenant, pk: int) -> Study:
    study = Study.objects.visible_to(tenant).select_related("patient", "uploaded_by").filter(pk=pk).first()
    if study is None:
        raise Http404("No such study.")
    return study


def get_care_assignment(tenant: Tenant, pk: int) -> CareAssignment:
    assignment = CareAssignment.objects.visible_to(tenant).select_related("patient", "doctor").filter(pk=pk).first()
    if assignment is None:
        raise Http404("No such assignment.")
    return assignment
