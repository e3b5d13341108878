"""Nothing waits forever: the lease a read holds, the watchdog that sends stalled reads again, the
broker's visibility timeout, and notifications sent from committed state (one per recipient and
result, however often the result is announced).

The watchdog's view of the broker (``studies_in_broker``) is tested on the real Redis; whole
outages and killed workers are in test_recovery_integration.py.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from django_scopes import scopes_disabled
from kombu import Connection

from apps.accounts.models import AuditEvent
from apps.chat.models import Notification, NotificationKind
from apps.diagnosis import watchdog
from apps.diagnosis.models import Diagnosis
from apps.diagnosis.tasks import diagnose_study
from apps.studies.models import Study, StudyStatus
from apps.studies.services import assign_doctor, unassign_doctor
from imagemedix.celery import app
from tests.celery_worker import dedicated_broker
from tests.factories import make_study

from .helpers import read_now, task_ids


def _study(world) -> Study:
    return make_study(world.paul_record, world.alice)


def _set(study: Study, **fields) -> None:
    with scopes_disabled():
        Study.objects.filter(pk=study.pk).update(**fields)


def _reload(study: Study) -> Study:
    with scopes_disabled():
        return Study.objects.get(pk=study.pk)


def _requeue_events(study: Study) -> list[dict]:
    with scopes_disabled():
        return [e.detail for e in AuditEvent.objects.filter(action="study.requeue", detail__study=study.pk)]


def _long_ago() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=django_settings.DIAGNOSIS_LEASE_SECONDS + 5)


# --- The lease ---------------------------------------------------------------------------------


def test_a_read_leases_its_study_while_processing(world, fake_pipeline, settings):
    settings.DIAGNOSIS_LEASE_SECONDS = 90
    study = _study(world)
    seen = {}
    run = fake_pipeline.run

    def watching(data):
        seen["study"] = _reload(study)
        return run(data)

    fake_pipeline.run = watching
    before = timezone.now()
    read_now(study)
    assert seen["study"].status == StudyStatus.PROCESSING
    lease_left = (seen["study"].processing_until - before).total_seconds()
    assert 89 <= lease_left <= 91


@pytest.mark.django_db(transaction=True)
def test_the_worker_renews_its_lease_while_it_reads(world, fake_pipeline, eager_celery, settings):
    """The renewal runs beside the read (a thread with its own connection), so the read must be
    committed state: a transactional test, where the upload's commit runs the read inline."""
    settings.DIAGNOSIS_LEASE_SECONDS = 0.6  # renewed every 0.2 s
    leases = []
    run = fake_pipeline.run

    def slow(data):
        for _ in range(4):
            with scopes_disabled():
                leases.append(Study.objects.latest("pk").processing_until)
            time.sleep(0.4)
        return run(data)

    fake_pipeline.run = slow
    study = _study(world)
    assert leases == sorted(leases) and len(set(leases)) >= 3, leases  # pushed forward while reading
    assert _reload(study).status == StudyStatus.DONE


# --- The watchdog --------------------------------------------------------------------------------


def test_an_expired_lease_is_sent_again_and_read(
    world, fake_pipeline, eager_celery, django_capture_on_commit_callbacks
):
    dead = _study(world)  # its worker died: the lease ran out
    alive = _study(world)  # its worker is still renewing
    legacy = _study(world)  # processing with no lease at all (a row from before leases)
    _set(dead, status=StudyStatus.PROCESSING, processing_until=timezone.now() - dt.timedelta(seconds=1))
    _set(alive, status=StudyStatus.PROCESSING, processing_until=timezone.now() + dt.timedelta(seconds=30))
    _set(legacy, status=StudyStatus.PROCESSING, processing_until=None)

    with django_capture_on_commit_callbacks(execute=True):
        resent = watchdog.resend_stalled_reads()

    assert sorted(resent["lease_expired"]) == sorted([dead.pk, legacy.pk])
    assert _reload(dead).status == _reload(legacy).status == StudyStatus.DONE
    assert _reload(alive).status == StudyStatus.PROCESSING
    assert _requeue_events(dead) == [{"study": dead.pk, "reason": "lease_expired"}]
    assert _requeue_events(alive) == []


def test_a_queued_study_whose_message_is_nowhere_is_sent_again(
    world, fake_pipeline, eager_celery, django_capture_on_commit_callbacks
):
    lost = _study(world)
    just_sent = _study(world)  # within the grace period: its message may be on its way
    _set(lost, updated_at=_long_ago())
    with django_capture_on_commit_callbacks(execute=True):
        resent = watchdog.resend_stalled_reads()
    assert resent == {"lease_expired": [], "not_in_broker": [lost.pk]}
    assert _reload(lost).status == StudyStatus.DONE
    assert _reload(just_sent).status == StudyStatus.QUEUED
    assert _requeue_events(lost) == [{"study": lost.pk, "reason": "not_in_broker"}]


def test_finished_studies_are_left_alone(world, fake_pipeline, eager_celery, django_capture_on_commit_callbacks):
    study = _study(world)
    read_now(study)
    _set(study, updated_at=_long_ago(), processing_until=_long_ago())
    with django_capture_on_commit_callbacks(execute=True):
        assert watchdog.resend_stalled_reads() == {"lease_expired": [], "not_in_broker": []}
    assert fake_pipeline.runs == 1


@pytest.mark.integration
def test_the_broker_is_asked_which_reads_are_waiting_or_held(world, redis_url, django_capture_on_commit_callbacks):
    """On the real Redis: a message waiting in the queue, and one a worker took and has not
    acknowledged, both count as live; once the broker loses them they do not."""
    waiting, held, lost = _study(world), _study(world), _study(world)
    with dedicated_broker(redis_url, "watchdog") as broker:
        with django_capture_on_commit_callbacks(execute=True):
            for study in (waiting, held):
                diagnose_study.delay(**task_ids(study))
        with Connection(broker.url) as conn:
            channel = conn.default_channel
            taken = channel.basic_get(broker.queue, no_acks=False)  # a worker holding it (acks_late)
            assert taken is not None
            assert watchdog.studies_in_broker() >= {waiting.pk, held.pk}
            assert lost.pk not in watchdog.studies_in_broker()

            channel.client.delete(broker.queue, channel.unacked_key, channel.unacked_index_key)  # data lost
            assert {waiting.pk, held.pk}.isdisjoint(watchdog.studies_in_broker())


# --- Settings ------------------------------------------------------------------------------------


def test_the_visibility_timeout_covers_every_task_and_retry():
    """A message is redelivered once the visibility timeout passes without an ack: it must exceed
    the longest any task may run and the longest retry countdown, or a running task is sent twice."""
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert visibility == django_settings.REDIS_VISIBILITY_TIMEOUT == django_settings.DIAGNOSIS_TIME_LIMIT + 60
    ours = [task for name, task in app.tasks.items() if not name.startswith("celery.")]
    assert ours
    for task in ours:
        limit = task.time_limit or app.conf.task_time_limit
        assert limit and limit < visibility, task.name
    assert diagnose_study.retry_backoff_max < visibility


def test_beat_runs_the_watchdog():
    [entry] = [e for e in app.conf.beat_schedule.values() if e["task"] == "diagnosis.resend_stalled_reads"]
    assert entry["schedule"] == django_settings.DIAGNOSIS_WATCHDOG_SECONDS
    assert entry["options"]["expires"] == django_settings.DIAGNOSIS_WATCHDOG_SECONDS
    assert "diagnosis.resend_stalled_reads" in app.tasks


# --- Notifications from committed state ----------------------------------------------------------


def _ready_notes(study: Study) -> dict[str, int]:
    with scopes_disabled():
        notes = Notification.objects.filter(kind=NotificationKind.RESULT_READY, data__study_id=study.pk)
        counts: dict[str, int] = {}
        for email in notes.values_list("user__email", flat=True):
            counts[email] = counts.get(email, 0) + 1
    return counts


def test_a_rerun_that_finds_the_result_notifies_whoever_missed_it_once(
    world, fake_pipeline, django_capture_on_commit_callbacks
):
    with scopes_disabled():
        assign_doctor(world.paul_record, world.bob)
    study = _study(world)
    # The worker stores the result and dies before its on-commit announcement runs.
    read_now(study)
    with scopes_disabled():
        assert Diagnosis.objects.filter(study_id=study.pk).count() == 1
    assert _ready_notes(study) == {}

    # The redelivered message finds the result stored and announces it from committed state.
    with django_capture_on_commit_callbacks(execute=True):
        read_now(study)
    assert _ready_notes(study) == {"alice@st-mary.example": 1, "bob@st-mary.example": 1}
    # Any further rerun changes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        read_now(study)
        read_now(study)
    assert _ready_notes(study) == {"alice@st-mary.example": 1, "bob@st-mary.example": 1}
    assert fake_pipeline.runs == 1


def test_recipients_are_the_care_team_when_the_result_is_announced(
    world, fake_pipeline, django_capture_on_commit_callbacks
):
    with scopes_disabled():
        assign_doctor(world.paul_record, world.bob)
    study = make_study(world.paul_record, world.bob)
    read_now(study)  # announcement lost, as above
    with scopes_disabled():
        unassign_doctor(world.paul_record, world.bob)  # off the care team since
    with django_capture_on_commit_callbacks(execute=True):
        read_now(study)
    assert _ready_notes(study) == {"alice@st-mary.example": 1}
