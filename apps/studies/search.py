"""Finding patients by name or MRN: the caseload's search box, the upload page's patient field
and its JSON search (``studies:patient_search``)."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from .models import Patient


def matching(patients: QuerySet[Patient], q: str) -> QuerySet[Patient]:
    """Every word must match a given name, family name or MRN (so "paul potter" finds Paul Potter)."""
    for word in q.split()[:5]:
        patients = patients.filter(
            Q(given_name__icontains=word) | Q(family_name__icontains=word) | Q(mrn__icontains=word)
        )
    return patients


def patient_label(patient: Patient) -> str:
    """How a patient is named in a list to choose from: "POTTER, Paul — MRN A-0001, born 3 Feb 1990"."""
    return (
        f"{patient.family_name.upper()}, {patient.given_name} — MRN {patient.mrn}, born {patient.birth_date:%-d %b %Y}"
    )
