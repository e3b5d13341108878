"""Celery tasks of the AI second read.

``diagnose_study`` is a thin wrapper around ``services.run_diagnosis``: it is sent
``hospital_id`` and ``study_id`` (never objects) and runs inside that hospital's scope
(``TenantTask``). It is sent on commit when a study is submitted (the ``read_requested`` signal
of apps.studies), by the watchdog (``resend_stalled_reads``) and by ``manage.py requeue_studies``;
sending it twice is harmless (one Diagnosis per study and model versions). ``acks_late`` +
``reject_on_worker_lost``: a worker that dies mid-read leaves the message on the broker for
another worker (redelivered after the visibility timeout), and the lease the read holds lets the
watchdog send it again sooner. Only transient errors are retried.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.core.cache import cache

from apps.accounts.models import Hospital
from apps.accounts.tenancy import TenantTask

from . import drift, performance, services

log = logging.getLogger(__name__)

#: A message redelivered this many times for the same attempt killed its worker each time (out of
#: memory, hard time limit): give up on it instead of crashing workers forever.
MAX_DELIVERIES = 3


def _deliveries(task_id: str | None, retries: int) -> int:
    """How often this very attempt (task id + retry number) has started, counted in the shared
    cache (Redis in production). 1 on a first delivery; 0 if the cache is unavailable."""
    if not task_id:
        return 0
    key = f"diagnosis:deliveries:{task_id}:{retries}"
    try:
        cache.add(key, 0, timeout=24 * 3600)
        return int(cache.incr(key))
    except Exception:  # noqa: BLE001 - a cache outage must not stop the read
        log.warning("Could not count deliveries of task %s", task_id, exc_info=True)
        return 0


class ReadTask(TenantTask):
    """A study's read that could not be sent stays ``queued``: say so on the study page."""

    def on_send_error(self, exc: Exception, kwargs: dict[str, Any]) -> None:
        super().on_send_error(exc, kwargs)
        services.note_send_failed(kwargs["hospital_id"], kwargs["study_id"])


@shared_task(
    bind=True,
    base=ReadTask,
    name="diagnosis.diagnose_study",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.DIAGNOSIS_SOFT_TIME_LIMIT,
    time_limit=settings.DIAGNOSIS_TIME_LIMIT,
    autoretry_for=services.TRANSIENT_ERRORS,
    max_retries=3,
    retry_backoff=5,
    retry_backoff_max=120,
    retry_jitter=True,
)
def diagnose_study(self, *, hospital_id: int, study_id: int) -> int | None:
    """Read one study with the AI pipeline; returns the Diagnosis id (None if none was stored)."""
    if _deliveries(self.request.id, self.request.retries) > MAX_DELIVERIES:
        log.error("Study %s: task %s killed its worker %d times; giving up", study_id, self.request.id, MAX_DELIVERIES)
        services.give_up(study_id)
        return None
    final_attempt = self.request.retries >= (self.max_retries or 0)
    diagnosis = services.run_diagnosis(study_id, final_attempt=final_attempt)
    return diagnosis.pk if diagnosis is not None else None


@shared_task(name="diagnosis.summarize_performance", ignore_result=True)
def summarize_performance() -> int:
    """Beat entry (hourly): one ``summarize_hospital_performance`` task per active hospital. A
    platform task (it reads only the hospital list, which is not tenant data), so not a TenantTask."""
    hospital_ids = list(Hospital.objects.filter(is_active=True).values_list("pk", flat=True))
    for hospital_id in hospital_ids:
        summarize_hospital_performance.delay(hospital_id=hospital_id)
    return len(hospital_ids)


@shared_task(base=TenantTask, name="diagnosis.summarize_hospital_performance", ignore_result=True, acks_late=True)
def summarize_hospital_performance(*, hospital_id: int) -> int:
    """Refresh one hospital's ``VersionPerformance`` rows; returns the number of weeks recomputed."""
    return len(performance.summarize_hospital(hospital_id))


@shared_task(name="diagnosis.check_drift", ignore_result=True)
def check_drift() -> int:
    """Beat entry (daily): one ``check_hospital_drift`` task per active hospital. A platform task,
    like ``summarize_performance``."""
    hospital_ids = list(Hospital.objects.filter(is_active=True).values_list("pk", flat=True))
    for hospital_id in hospital_ids:
        check_hospital_drift.delay(hospital_id=hospital_id)
    return len(hospital_ids)


@shared_task(base=TenantTask, name="diagnosis.check_hospital_drift", ignore_result=True, acks_late=True)
def check_hospital_drift(*, hospital_id: int) -> int:
    """Today's drift checks of one hospital (alerts and notifications included); returns how many
    signals crossed their threshold."""
    return sum(1 for check in drift.check_hospital(hospital_id) if check.crossed)


@shared_task(name="diagnosis.resend_stalled_reads", ignore_result=True, soft_time_limit=60)
def resend_stalled_reads() -> dict[str, list[int]]:
    """The watchdog (apps/diagnosis/watchdog.py), sent by beat every DIAGNOSIS_WATCHDOG_SECONDS and
    by each worker as it starts. A platform task across hospitals, so not a TenantTask: it enters
    each study's hospital scope itself."""
    from .watchdog import resend_stalled_reads as resend

    return resend()


@worker_ready.connect
def check_on_worker_start(sender: object, **kwargs: object) -> None:
    """A worker that starts (the first, or one back after an outage) looks for stalled reads at
    once instead of waiting for the next beat."""
    try:
        resend_stalled_reads.delay()
    except Exception:  # noqa: BLE001 - the broker went away again; beat sends the next check
        log.exception("Could not send the watchdog check on worker start")
