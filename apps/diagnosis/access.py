"""Who sees which AI reads: exactly those who see the study (``apps.studies.access``), i.e. the
doctors caring for the patient and the hospital's admins. Anything else is a 404."""

from __future__ import annotations

from django.http import Http404

from apps.accounts.tenancy import Tenant
from apps.studies.access import get_study
from apps.studies.models import Study

from .models import Diagnosis
from .services import latest_diagnosis


def get_study_and_diagnosis(tenant: Tenant, study_pk: int) -> tuple[Study, Diagnosis | None]:
    """The visible study and its latest diagnosis (None before the AI read)."""
    study = get_study(tenant, study_pk)
    return study, latest_diagnosis(study)


def get_diagnosis(tenant: Tenant, study_pk: int) -> Diagnosis:
    """The latest diagnosis of a visible study; 404 when there is none (or no access)."""
    _, diagnosis = get_study_and_diagnosis(tenant, study_pk)
    if diagnosis is None:
        raise Http404("No AI read for this study.")
    return diagnosis
