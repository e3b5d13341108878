"""How reads are sent: on commit (``TenantTask``), never for a rolled-back upload, and a broker
that is down leaves the study queued with a message saying so."""

from __future__ import annotations

import pytest
from django.db import transaction
from django_scopes import scopes_disabled

from apps.diagnosis import services
from apps.diagnosis.models import Diagnosis
from apps.studies.models import Study, StudyStatus
from tests.celery_worker import dedicated_broker
from tests.factories import make_study


def _diagnosed(study: Study) -> bool:
    with scopes_disabled():
        return Diagnosis.objects.filter(study_id=study.pk).exists()


def test_the_read_is_sent_on_commit_only(world, fake_pipeline, eager_celery, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        study = make_study(world.paul_record, world.alice)
    assert not _diagnosed(study)  # nothing ran inside the transaction
    assert callbacks, "the read waits for the commit"
    for callback in callbacks:
        callback()
    assert _diagnosed(study)


def test_a_rolled_back_upload_sends_nothing(world, fake_pipeline, eager_celery, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            make_study(world.paul_record, world.alice)
            raise RuntimeError("the surrounding change failed")
    assert callbacks == []
    assert fake_pipeline.runs == 0
    with scopes_disabled():
        assert not Study.objects.filter(patient=world.paul_record).exists()


@pytest.mark.integration
def test_a_broker_that_is_down_leaves_the_study_queued_with_a_message(
    world, fake_pipeline, django_capture_on_commit_callbacks
):
    # Nothing listens on port 1: sending fails at once, as with Redis stopped.
    with dedicated_broker("redis://127.0.0.1:1/0", "down", clear=False):
        with django_capture_on_commit_callbacks(execute=True):
            study = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        study = Study.objects.get(pk=study.pk)
    assert study.status == StudyStatus.QUEUED
    assert study.status_message == services.MSG_BROKER_DOWN
    assert fake_pipeline.runs == 0
