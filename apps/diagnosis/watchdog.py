"""Sending the AI read, and sending it again when it got stuck.

``send_read`` is the one way a study's read is sent to the workers (on commit, through the
``TenantTask`` base of ``diagnose_study``). ``requeue_stuck_studies`` is the operator's command
(``manage.py requeue_studies``) for studies stuck longer than a given time.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.utils import timezone
from django_scopes import scopes_disabled

from apps.accounts import audit
from apps.accounts.models import Hospital
from apps.accounts.tenancy import tenant_scope
from apps.studies.models import Study, StudyStatus
from apps.studies.services import set_study_status

from .tasks import diagnose_study

log = logging.getLogger(__name__)

MSG_QUEUED = "Waiting for the AI second read."


def send_read(hospital_id: int, study_id: int) -> None:
    """Send the study's AI read to the workers once the current transaction commits."""
    diagnose_study.delay(hospital_id=hospital_id, study_id=study_id)


def on_read_requested(sender: object, *, hospital_id: int, study_id: int, **kwargs: object) -> None:
    """Receiver of apps.studies' ``read_requested`` (a study was submitted)."""
    send_read(hospital_id, study_id)


def requeue_stuck_studies(older_than: dt.timedelta, *, dry_run: bool = False) -> list[int]:
    """Send again the studies that sat in uploaded/queued/processing longer than ``older_than``.
    A platform operation across hospitals (it lists them with scopes off, then works on each in
    its hospital's scope); the read is idempotent, so a study that was in fact still running is
    not read twice."""
    cutoff = timezone.now() - older_than
    stuck_states = [StudyStatus.UPLOADED, StudyStatus.QUEUED, StudyStatus.PROCESSING]
    with scopes_disabled():
        stuck = list(
            Study.objects.filter(status__in=stuck_states, updated_at__lt=cutoff)
            .order_by("updated_at")
            .values_list("pk", "hospital_id")
        )
    if dry_run:
        return [pk for pk, _ in stuck]
    for study_id, hospital_id in stuck:
        with transaction.atomic(), tenant_scope(hospital_id):
            set_study_status(study_id, hospital_id, StudyStatus.QUEUED, MSG_QUEUED, updated_at=timezone.now())
            audit.record("study.requeue", hospital=Hospital.objects.get(pk=hospital_id), study=study_id)
            send_read(hospital_id, study_id)
    return [pk for pk, _ in stuck]
