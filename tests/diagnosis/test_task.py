"""The AI read of a study: the Celery task in its eager (embedded) mode, idempotency, refusals,
and every failure path ending with a message a clinician can read and the study kept."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.accounts.tenancy import tenant_scope
from apps.diagnosis import services
from apps.diagnosis.models import Diagnosis, ModelVersion
from apps.diagnosis.pipeline.decode import DecodeError
from apps.diagnosis.tasks import diagnose_study
from apps.studies.models import Study, StudyStatus
from apps.studies.services import study_status_changed
from apps.studies.storage import read_encrypted
from tests.factories import make_study, png_bytes

from .conftest import INDETERMINATE, REFUSED, FakeResult
from .helpers import fake_version, heatmap_png, read_now, task_ids


def _study(world) -> Study:
    return make_study(world.paul_record, world.alice)


def _reload(study: Study) -> Study:
    with scopes_disabled():
        return Study.objects.get(pk=study.pk)


def _diagnoses(study: Study) -> list[Diagnosis]:
    with scopes_disabled():
        return list(Diagnosis.objects.filter(study_id=study.pk))


def test_task_stores_the_result_and_moves_the_status(
    world, fake_pipeline, eager_celery, django_capture_on_commit_callbacks
):
    study = _study(world)
    seen: list[str] = []

    def on_status(sender, status, **kwargs):
        seen.append(status)

    study_status_changed.connect(on_status)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            diagnose_study.apply(kwargs=task_ids(study))
    finally:
        study_status_changed.disconnect(on_status)

    study = _reload(study)
    assert study.status == StudyStatus.DONE
    assert study.modality == "chest_xray"
    assert study.status_message == "AI second read ready: Viral pneumonia (70%)"
    assert seen == ["processing", "done"]  # announced on commit, in order
    [diagnosis] = _diagnoses(study)
    versions = fake_pipeline.built_with
    assert diagnosis.hospital_id == world.a.pk
    assert diagnosis.label == "viral_pneumonia" and diagnosis.task == "chest" and not diagnosis.refused
    assert diagnosis.probabilities == {"normal": 0.1, "bacterial_pneumonia": 0.2, "viral_pneumonia": 0.7}
    assert diagnosis.roi_box == [3, 4, 20, 25]
    assert diagnosis.router_version == versions[0] and diagnosis.router_sha256 == versions[0].weights_sha256
    assert diagnosis.specialist_version == versions[1]["chest"]
    assert diagnosis.specialist_sha256 == versions[1]["chest"].weights_sha256
    assert diagnosis.timings_ms["specialist"] == 8.0
    # the overlay and the heatmap alone are stored encrypted and read back
    assert read_encrypted(diagnosis.overlay_name, diagnosis.overlay_sha256).startswith(b"\x89PNG")
    assert read_encrypted(diagnosis.heatmap_name, diagnosis.heatmap_sha256) == heatmap_png()
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="diagnosis.create", object_id=str(diagnosis.pk)).exists()


def test_running_twice_stores_one_diagnosis(world, fake_pipeline, eager_celery):
    study = _study(world)
    diagnose_study.apply(kwargs=task_ids(study))
    diagnose_study.apply(kwargs=task_ids(study))
    read_now(study)
    assert len(_diagnoses(study)) == 1
    assert fake_pipeline.runs == 1  # the second and third runs found the stored read


def test_a_concurrent_duplicate_is_not_stored_twice(world, fake_pipeline, media_files):
    """Two workers read the same study at once: the unique key keeps one row and the loser's
    overlay file is removed."""
    study = _study(world)
    first = read_now(study)
    files_before = media_files()
    router, specialists = fake_pipeline.built_with
    with scopes_disabled():
        study = Study.objects.select_related("hospital").get(pk=study.pk)
        again = services._store_result(study, FakeResult(), router, specialists)
    assert again.pk == first.pk
    assert len(_diagnoses(study)) == 1
    assert media_files() == files_before


def test_new_model_version_gives_a_new_diagnosis(world, fake_pipeline, fake_models):
    study = _study(world)
    read_now(study)
    with scopes_disabled():
        from apps.diagnosis.registry import activate_version

        activate_version(fake_version("chest", "v2"))
    read_now(study)
    read_now(study)
    diagnoses = _diagnoses(study)
    assert len(diagnoses) == 2
    assert {d.specialist_version.version for d in diagnoses} == {"v1", "v2"}
    with scopes_disabled():
        assert services.latest_diagnosis(study).specialist_version.version == "v2"


def test_refusal_is_a_result_not_a_failure(world, fake_pipeline, media_files):
    fake_pipeline.result = REFUSED
    study = _study(world)
    files_before = media_files()
    read_now(study)
    study = _reload(study)
    assert study.status == StudyStatus.REFUSED  # a result, but never "AI read ready"
    assert study.get_status_display() == "Not read by the AI"
    assert study.status_message == "Not read by the AI: it looks like a photograph, not a medical image"
    assert study.modality == "unsupported"
    [diagnosis] = _diagnoses(study)
    assert diagnosis.refused and diagnosis.label == "" and diagnosis.specialist_version is None
    assert diagnosis.refusal_code == "other_modality"
    assert diagnosis.versions_key.endswith(":-")
    assert media_files() == files_before  # no overlay for a refusal
    read_now(study)
    assert len(_diagnoses(study)) == 1


def test_modality_warning_is_kept_and_mentioned(world, fake_pipeline):
    fake_pipeline.result = FakeResult(
        modality_warning="The DICOM header says CT, but the image looks like a chest X-ray."
    )
    study = _study(world)
    read_now(study)
    [diagnosis] = _diagnoses(study)
    assert "DICOM header says CT" in diagnosis.modality_warning
    assert "DICOM header says CT" in _reload(study).status_message


def test_tampered_file_fails_with_a_message_and_keeps_the_study(world, fake_pipeline, settings):
    study = _study(world)
    path = settings.MEDIA_ROOT / study.file_name
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))

    read_now(study)

    study = _reload(study)
    assert study.status == StudyStatus.FAILED
    assert study.status_message == services.MSG_TAMPERED
    assert path.exists()  # the evidence is kept
    assert _diagnoses(study) == []
    assert fake_pipeline.runs == 0
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="study.integrity_error", object_id=str(study.pk)).exists()


def test_crash_fails_with_a_readable_message(world, fake_pipeline):
    fake_pipeline.error = RuntimeError("CUDA out of memory in layer 7")
    study = _study(world)
    assert read_now(study) is None
    study = _reload(study)
    assert study.status == StudyStatus.FAILED
    assert study.status_message == "The AI read could not be completed; the image is kept and can be re-run."
    assert "CUDA" not in study.status_message


def test_undecodable_image_fails_with_the_decoder_message(world, fake_pipeline):
    fake_pipeline.error = DecodeError("The DICOM file has no pixel data.")
    study = _study(world)
    read_now(study)
    study = _reload(study)
    assert study.status == StudyStatus.FAILED
    assert study.status_message == "The image could not be read for the AI read: The DICOM file has no pixel data."


def test_transient_errors_are_raised_for_retry_until_the_last_attempt(world, fake_pipeline):
    fake_pipeline.error = OperationalError("server closed the connection unexpectedly")
    study = _study(world)
    with pytest.raises(OperationalError):
        read_now(study, final_attempt=False)
    assert _reload(study).status == StudyStatus.PROCESSING  # left for the retry
    read_now(study, final_attempt=True)
    assert _reload(study).status == StudyStatus.FAILED


def test_task_retries_transient_errors_then_succeeds(world, fake_pipeline, eager_celery):
    study = _study(world)
    calls = {"n": 0}
    original = fake_pipeline.run

    def flaky(data):
        calls["n"] += 1
        if calls["n"] < 3:
            raise OperationalError("database is restarting")
        return original(data)

    fake_pipeline.run = flaky
    diagnose_study.apply(kwargs=task_ids(study))
    assert calls["n"] == 3
    assert _reload(study).status == StudyStatus.DONE
    assert len(_diagnoses(study)) == 1


def test_task_options():
    assert diagnose_study.acks_late is True
    assert diagnose_study.reject_on_worker_lost is True
    assert diagnose_study.max_retries == 3
    assert diagnose_study.soft_time_limit and diagnose_study.time_limit > diagnose_study.soft_time_limit
    assert OperationalError in diagnose_study.autoretry_for
    assert RuntimeError not in diagnose_study.autoretry_for


def test_no_registered_models_fails_with_a_message(world, settings, tmp_path, eager_celery):
    settings.MODEL_WEIGHTS_DIR = tmp_path / "no-weights"
    with scopes_disabled():
        ModelVersion.objects.all().delete()
    study = _study(world)
    diagnose_study.apply(kwargs=task_ids(study))
    study = _reload(study)
    assert study.status == StudyStatus.FAILED
    assert study.status_message == services.MSG_NO_MODELS


def test_missing_study_is_ignored(world, fake_pipeline):
    assert diagnose_study.apply(kwargs={"hospital_id": world.a.pk, "study_id": 987654}).get() is None
    assert fake_pipeline.runs == 0


def test_a_study_of_another_hospital_is_not_found(world, fake_pipeline):
    """The task runs in the scope of the hospital it was sent; a study id of another hospital is
    simply not found there."""
    study = _study(world)
    assert diagnose_study.apply(kwargs={"hospital_id": world.b.pk, "study_id": study.pk}).get() is None
    assert fake_pipeline.runs == 0
    assert _reload(study).status == StudyStatus.QUEUED


def test_upload_runs_the_read_inline_in_the_embedded_mode(
    world, client, fake_pipeline, eager_celery, django_capture_on_commit_callbacks
):
    client.force_login(world.alice)
    url = reverse("studies:upload", kwargs={"hospital_slug": "st-mary"})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url, {"patient": world.paul_record.pk, "image": SimpleUploadedFile("cxr.png", png_bytes(), "image/png")}
        )
    assert response.status_code == 302
    with scopes_disabled():
        study = Study.objects.get(patient=world.paul_record)
    assert study.status == StudyStatus.DONE
    assert len(_diagnoses(study)) == 1


def test_upload_survives_a_crashing_read(
    world, client, fake_pipeline, eager_celery, django_capture_on_commit_callbacks
):
    fake_pipeline.error = MemoryError()
    client.force_login(world.alice)
    url = reverse("studies:upload", kwargs={"hospital_slug": "st-mary"})
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            url, {"patient": world.paul_record.pk, "image": SimpleUploadedFile("cxr.png", png_bytes(), "image/png")}
        )
    assert response.status_code == 302  # the upload itself succeeded
    with scopes_disabled():
        study = Study.objects.get(patient=world.paul_record)
    assert study.status == StudyStatus.FAILED
    assert "can be re-run" in study.status_message


def test_requeue_studies_resends_only_stuck_studies(
    world, fake_pipeline, eager_celery, django_capture_on_commit_callbacks
):
    stuck = _study(world)
    fresh = _study(world)
    with scopes_disabled():
        Study.objects.filter(pk=stuck.pk).update(
            status=StudyStatus.PROCESSING, updated_at=timezone.now() - dt.timedelta(hours=1)
        )
    with django_capture_on_commit_callbacks(execute=True):
        call_command("requeue_studies", "--minutes", "30")
    assert _reload(stuck).status == StudyStatus.DONE
    assert _reload(fresh).status == StudyStatus.QUEUED
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="study.requeue", hospital=world.a).count() == 1


def test_a_message_that_keeps_killing_workers_is_given_up(world, fake_pipeline):
    """acks_late + reject_on_worker_lost redeliver a read whose worker died; the same attempt
    delivered more than MAX_DELIVERIES times fails the study instead of looping forever."""
    from apps.diagnosis import tasks

    study = _study(world)
    killed, fresh = f"killed-{uuid.uuid4()}", f"fresh-{uuid.uuid4()}"  # the cache may be a shared Redis
    for _ in range(tasks.MAX_DELIVERIES):  # earlier deliveries of the same attempt, all killed
        tasks._deliveries(killed, 0)
    diagnose_study.apply(kwargs=task_ids(study), task_id=killed)
    study = _reload(study)
    assert study.status == StudyStatus.FAILED and "can be re-run" in study.status_message
    assert fake_pipeline.runs == 0
    # a new attempt (a requeue sends a new task) reads it normally
    diagnose_study.apply(kwargs=task_ids(study), task_id=fresh)
    assert _reload(study).status == StudyStatus.DONE


@pytest.mark.parametrize(
    ("code", "route", "reason", "message"),
    [
        (
            "other_modality",
            "unsupported",
            "This looks like a CT slice, not a chest X-ray or brain MRI, so no AI read was made.",
            "Not read by the AI: this looks like a CT slice, not a chest X-ray or brain MRI, so no AI read was made",
        ),
        (
            "unlike_training",
            "brain_mri",
            "This looks like a brain image, but unlike the MRIs the model was trained on, so no AI read was made.",
            "Not read by the AI: this looks like a brain image, but unlike the MRIs the model was trained on, "
            "so no AI read was made",
        ),
        ("unreadable", "unsupported", "The image has non-finite pixel values.", None),
        ("unclear_route", "chest_xray", "The AI could not tell what kind of image this is.", None),
    ],
)
def test_each_refusal_code_is_stored_with_its_reason(world, fake_pipeline, code, route, reason, message):
    fake_pipeline.result = FakeResult(
        route=route,
        refused=True,
        refusal_code=code,
        refusal_reason=reason,
        task="brain" if code == "unlike_training" else None,
        ood={"score": 3.2, "threshold": 1.5} if code == "unlike_training" else {},
    )
    study = _study(world)
    read_now(study)
    study = _reload(study)
    [diagnosis] = _diagnoses(study)
    assert diagnosis.refused and diagnosis.refusal_code == code and diagnosis.refusal_reason == reason
    assert diagnosis.label == "" and diagnosis.probabilities == {} and not diagnosis.overlay_name
    assert diagnosis.confidence is None
    # The feature-space refusal is the specialist's: it is attributed to the version that checked.
    expected = fake_pipeline.built_with[1]["brain"] if code == "unlike_training" else None
    assert diagnosis.specialist_version == expected
    assert study.status == StudyStatus.REFUSED and study.modality == "unsupported"
    assert study.status_message == (message or "Not read by the AI: " + reason[0].lower() + reason[1:].rstrip("."))
    if code == "unlike_training":
        assert diagnosis.ood == {"score": 3.2, "threshold": 1.5}
    with scopes_disabled():
        event = AuditEvent.objects.get(action="diagnosis.create", object_id=str(diagnosis.pk))
    assert event.detail["refusal_code"] == code


def test_an_unknown_refusal_code_is_not_stored(world, fake_pipeline):
    fake_pipeline.result = FakeResult(
        route="unsupported", refused=True, refusal_code="moon_phase", refusal_reason="No.", task=None
    )
    study = _study(world)
    read_now(study)
    [diagnosis] = _diagnoses(study)
    assert diagnosis.refused and diagnosis.refusal_code == ""
    assert _reload(study).status == StudyStatus.REFUSED


def test_an_indeterminate_read_is_stored_unsure_without_a_percentage(world, fake_pipeline):
    fake_pipeline.result = INDETERMINATE
    study = _study(world)
    read_now(study)
    study = _reload(study)
    [diagnosis] = _diagnoses(study)
    assert diagnosis.indeterminate and diagnosis.candidates == ["bacterial_pneumonia", "viral_pneumonia"]
    assert diagnosis.label == "bacterial_pneumonia"  # kept for the record and the feedback export
    assert diagnosis.ood == {"score": 0.8, "threshold": 1.5}
    assert diagnosis.roi_box is None and diagnosis.overlay_name  # a diffuse heatmap: overlay, no box
    assert diagnosis.label_display == "Indeterminate: bacterial or viral pneumonia"
    assert diagnosis.confidence is None
    assert study.status == StudyStatus.UNSURE and study.get_status_display() == "AI unsure"
    assert study.modality == "chest_xray"
    assert study.status_message == "AI second read ready: indeterminate — bacterial or viral pneumonia"
    assert "%" not in study.status_message


def test_indeterminate_wins_nothing_on_a_refusal(world, fake_pipeline):
    """A refused result is a refusal, whatever else the pipeline filled in."""
    fake_pipeline.result = FakeResult(
        route="unsupported",
        refused=True,
        refusal_code="unclear_route",
        refusal_reason="Unclear.",
        task=None,
        indeterminate=True,
        candidates=["normal", "viral_pneumonia"],
    )
    study = _study(world)
    read_now(study)
    [diagnosis] = _diagnoses(study)
    assert diagnosis.refused and not diagnosis.indeterminate and diagnosis.candidates == []
    assert _reload(study).status == StudyStatus.REFUSED


def test_rerunning_a_stored_unsure_read_restores_its_status(world, fake_pipeline):
    fake_pipeline.result = INDETERMINATE
    study = _study(world)
    read_now(study)
    with scopes_disabled():
        Study.objects.filter(pk=study.pk).update(status=StudyStatus.QUEUED)
    read_now(study)
    assert fake_pipeline.runs == 1
    assert _reload(study).status == StudyStatus.UNSURE


@pytest.mark.parametrize("result", [REFUSED, INDETERMINATE], ids=["refused", "unsure"])
def test_give_up_keeps_a_refused_or_unsure_result(world, fake_pipeline, result):
    fake_pipeline.result = result
    study = _study(world)
    read_now(study)
    before = _reload(study).status
    with tenant_scope(study.hospital_id):
        services.give_up(study.pk)
    assert _reload(study).status == before != StudyStatus.FAILED
