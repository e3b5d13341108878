"""Sending the AI read, and sending it again when it got stuck: nothing waits forever.

``send_read`` is the one way a study's read is sent to the workers (on commit, through the
``TenantTask`` base of ``diagnose_study``).

``resend_stalled_reads`` is the watchdog. Celery beat runs it every ``DIAGNOSIS_WATCHDOG_SECONDS``
and every worker runs it once when it starts (``worker_ready``). It sends the read again for

* a study in ``processing`` whose lease (``processing_until``) ran out: the worker reading it
  renews the lease every third of ``DIAGNOSIS_LEASE_SECONDS`` while it works, so a lease that runs
  out means that worker died (killed, out of memory, machine gone);
* a study in ``queued`` for longer than the lease whose read is in no queue and held by no worker:
  the broker was down when it was sent (the upload still succeeded), or lost its data in a
  restart. "In no queue" is asked of the broker itself (``studies_in_broker``).

Sending twice is harmless: the read is idempotent, and a rerun that finds the result stored only
makes sure it was announced (each recipient is notified once). ``requeue_stuck_studies`` is the
operator's command (``manage.py requeue_studies``) for anything stuck longer than a given time.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, cast

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_scopes import scopes_disabled

from apps.accounts import audit
from apps.accounts.models import Hospital
from apps.accounts.tenancy import tenant_scope
from apps.studies.models import Study, StudyStatus
from apps.studies.services import set_study_status

from .tasks import diagnose_study

if TYPE_CHECKING:
    from kombu.transport.redis import Channel as RedisChannel

log = logging.getLogger(__name__)

MSG_QUEUED = "Waiting for the AI second read."


def send_read(hospital_id: int, study_id: int) -> None:
    """Send the study's AI read to the workers once the current transaction commits."""
    diagnose_study.delay(hospital_id=hospital_id, study_id=study_id)


def on_read_requested(sender: object, *, hospital_id: int, study_id: int, **kwargs: object) -> None:
    """Receiver of apps.studies' ``read_requested`` (a study was submitted)."""
    send_read(hospital_id, study_id)


def resend_stalled_reads() -> dict[str, list[int]]:
    """The watchdog (module docstring): send again the reads of studies whose worker died or whose
    message was lost. A platform operation across hospitals: it lists the studies with scopes off,
    then changes each in its hospital's scope, only if it is still stalled (another watchdog run, or
    the worker itself, may have moved it meanwhile). Returns the study ids, by reason."""
    now = timezone.now()
    lease = dt.timedelta(seconds=settings.DIAGNOSIS_LEASE_SECONDS)
    with scopes_disabled():
        expired = list(
            Study.objects.filter(status=StudyStatus.PROCESSING)
            .filter(Q(processing_until__lt=now) | Q(processing_until__isnull=True))
            .values_list("pk", "hospital_id")
        )
        waiting = list(
            Study.objects.filter(status=StudyStatus.QUEUED, updated_at__lt=now - lease).values_list("pk", "hospital_id")
        )
    if waiting:
        in_broker = studies_in_broker()
        waiting = [(pk, hospital_id) for pk, hospital_id in waiting if pk not in in_broker]
    resent: dict[str, list[int]] = {"lease_expired": [], "not_in_broker": []}
    for study_id, hospital_id in expired:
        still = Q(status=StudyStatus.PROCESSING) & (Q(processing_until__lt=now) | Q(processing_until__isnull=True))
        if _resend(study_id, hospital_id, still, "lease_expired"):
            resent["lease_expired"].append(study_id)
    for study_id, hospital_id in waiting:
        if _resend(study_id, hospital_id, Q(status=StudyStatus.QUEUED, updated_at__lt=now - lease), "not_in_broker"):
            resent["not_in_broker"].append(study_id)
    if resent["lease_expired"] or resent["not_in_broker"]:
        log.warning("Watchdog sent reads again: %s", resent)
    return resent


def _resend(study_id: int, hospital_id: int, still_stalled: Q, reason: str) -> bool:
    with transaction.atomic(), tenant_scope(hospital_id):
        claimed = Study.objects.filter(still_stalled, pk=study_id).select_for_update(skip_locked=True).first()
        if claimed is None:
            return False
        set_study_status(
            study_id, hospital_id, StudyStatus.QUEUED, MSG_QUEUED, updated_at=timezone.now(), processing_until=None
        )
        audit.record("study.requeue", hospital=Hospital.objects.get(pk=hospital_id), study=study_id, reason=reason)
        send_read(hospital_id, study_id)
    return True


def studies_in_broker() -> set[int]:
    """Ids of the studies whose ``diagnose_study`` message is in the broker: waiting in this
    deployment's queue, or delivered to a worker and not acknowledged yet (kombu's Redis transport
    keeps those in its ``unacked`` hash until the task ends, as the tasks are ``acks_late``). Empty
    when tasks run inline (no broker). Our messages carry no priority, so the queue is one list."""
    from imagemedix.celery import app

    if app.conf.task_always_eager:
        return set()
    queue = app.conf.task_default_queue
    with app.connection_for_read() as connection:
        channel = cast("RedisChannel", connection.default_channel)  # the broker is Redis here (eager: above)
        client = channel.client
        queued = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
        # One unacked hash serves every queue on this Redis database: keep ours (its routing key).
        held = [json.loads(entry) for entry in client.hvals(channel.unacked_key)]
    messages = queued + [message for message, _exchange, routing_key in held if routing_key == queue]
    found = set()
    for message in messages:
        if message.get("headers", {}).get("task") != diagnose_study.name:
            continue
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        _args, kwargs, _embed = json.loads(body)
        found.add(int(kwargs["study_id"]))
    return found


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
