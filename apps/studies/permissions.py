"""The one module of this app that talks to django-guardian."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from guardian.shortcuts import assign_perm, get_objects_for_user, remove_perm

from .models import Patient

PATIENT_PERMS = ("studies.view_patient", "studies.change_patient")


def grant_patient_access(doctor: Any, patient: Patient) -> None:
    for perm in PATIENT_PERMS:
        assign_perm(perm, doctor, patient)


def revoke_patient_access(doctor: Any, patient: Patient) -> None:
    for perm in PATIENT_PERMS:
        remove_perm(perm, doctor, patient)


def patients_with_perm(user: Any, queryset: QuerySet[Patient], perm: str = "studies.view_patient") -> QuerySet[Patient]:
    """Patients in ``queryset`` on which ``user`` holds ``perm`` as an object permission."""
    return get_objects_for_user(user, perm, queryset, accept_global_perms=False, with_superuser=False)
