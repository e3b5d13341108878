"""Doctors confirming or correcting an AI read, and the retraining export of those verdicts."""

from __future__ import annotations

import csv
import hashlib

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django_scopes import scopes_disabled
from PIL import Image

from apps.accounts.models import AuditEvent
from apps.diagnosis import services
from apps.diagnosis.models import Feedback, FeedbackAction
from tests.factories import jpeg_bytes, make_study, png_bytes

from .helpers import make_diagnosis


@pytest.fixture
def diagnosis(world):
    study = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        return make_diagnosis(study, label="bacterial_pneumonia")


def test_confirm_records_feedback_and_audits(world, diagnosis, django_capture_on_commit_callbacks):
    seen = []

    def on_review(sender, **kwargs):
        seen.append(kwargs)

    services.diagnosis_reviewed.connect(on_review)
    try:
        with scopes_disabled(), django_capture_on_commit_callbacks(execute=True):
            feedback = services.confirm_diagnosis(diagnosis, world.alice, "Agree: right lower lobe.")
    finally:
        services.diagnosis_reviewed.disconnect(on_review)
    assert feedback.action == FeedbackAction.CONFIRM
    assert feedback.final_label == "bacterial_pneumonia"
    assert feedback.hospital_id == world.a.pk and feedback.comment == "Agree: right lower lobe."
    assert seen and seen[0]["feedback_id"] == feedback.pk and seen[0]["hospital_id"] == world.a.pk
    with scopes_disabled():
        event = AuditEvent.objects.get(action="diagnosis.confirm")
    assert event.actor == world.alice and event.hospital == world.a
    assert event.detail["label"] == "bacterial_pneumonia"


def test_correct_records_the_doctors_label(world, diagnosis):
    with scopes_disabled():
        feedback = services.correct_diagnosis(diagnosis, world.alice, "viral_pneumonia", "Interstitial pattern.")
        event = AuditEvent.objects.get(action="diagnosis.correct")
    assert feedback.action == FeedbackAction.CORRECT
    assert feedback.corrected_label == "viral_pneumonia" == feedback.final_label
    assert event.detail["ai_label"] == "bacterial_pneumonia" and event.detail["label"] == "viral_pneumonia"


def test_correct_refuses_a_label_the_model_does_not_know(world, diagnosis):
    with scopes_disabled(), pytest.raises(ValidationError, match="Normal, Bacterial pneumonia, Viral pneumonia"):
        services.correct_diagnosis(diagnosis, world.alice, "glioma")
    with scopes_disabled():
        assert not Feedback.objects.exists()


def test_correcting_to_the_ai_label_is_a_confirmation(world, diagnosis):
    with scopes_disabled():
        feedback = services.correct_diagnosis(diagnosis, world.alice, "bacterial_pneumonia")
    assert feedback.action == FeedbackAction.CONFIRM


def test_only_doctors_of_the_hospital_give_feedback(world, diagnosis):
    with scopes_disabled():
        for person in (world.carol, world.paul, world.dora):
            with pytest.raises(ValidationError):
                services.confirm_diagnosis(diagnosis, person)
        assert not Feedback.objects.exists()


def test_a_refused_image_has_no_label_to_review(world):
    study = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        refused = make_diagnosis(study, refused=True)
        with pytest.raises(ValidationError):
            services.confirm_diagnosis(refused, world.alice)


# --- export_feedback -----------------------------------------------------------------------------


def _reviewed(world, patient, doctor, data, *, correct_to=None, ai_label="bacterial_pneumonia"):
    study = make_study(patient, doctor, data=data)
    with scopes_disabled():
        diagnosis = make_diagnosis(study, label=ai_label)
        if correct_to:
            services.correct_diagnosis(diagnosis, doctor, correct_to, "")
        else:
            services.confirm_diagnosis(diagnosis, doctor, "")
    return study


def test_export_feedback_writes_the_datasets_layout_across_hospitals(world, tmp_path):
    corrected_a = _reviewed(world, world.paul_record, world.alice, png_bytes((80, 60), seed=1), correct_to="normal")
    confirmed_a = _reviewed(world, world.paul_record, world.alice, jpeg_bytes((70, 50), seed=2))
    corrected_b = _reviewed(
        world, world.bea_record, world.dora, png_bytes((64, 64), seed=3), correct_to="viral_pneumonia"
    )
    unreviewed = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        make_diagnosis(unreviewed)

    out = tmp_path / "export"
    call_command("export_feedback", str(out), "--test-percent", "0")

    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == sorted(
        [
            f"chest_xray/train/normal/st-mary-{corrected_a.pk}.png",
            f"chest_xray/train/viral_pneumonia/riverside-{corrected_b.pk}.png",
        ]
    )
    image = Image.open(out / f"chest_xray/train/normal/st-mary-{corrected_a.pk}.png")
    assert image.mode == "L" and image.size == (80, 60)
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert list(rows[0])[:5] == ["split", "dataset", "label", "file", "sha256_of_png"]  # as shared/datasets
    assert {(r["study_id"], r["label"], r["ai_label"], r["action"], r["hospital"]) for r in rows} == {
        (str(corrected_a.pk), "normal", "bacterial_pneumonia", "correct", "st-mary"),
        (str(corrected_b.pk), "viral_pneumonia", "bacterial_pneumonia", "correct", "riverside"),
    }
    assert all(hashlib.sha256((out / r["file"]).read_bytes()).hexdigest() == r["sha256_of_png"] for r in rows)
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="diagnosis.export_feedback").count() == 2

    out2 = tmp_path / "with-confirmed"
    call_command("export_feedback", str(out2), "--include-confirmed", "--hospital", "st-mary", "--test-percent", "0")
    assert (out2 / f"chest_xray/train/bacterial_pneumonia/st-mary-{confirmed_a.pk}.png").exists()
    rows = list(csv.DictReader(open(out2 / "manifest.csv")))
    assert {r["action"] for r in rows} == {"confirm", "correct"} and {r["hospital"] for r in rows} == {"st-mary"}


def test_export_holds_out_whole_patients(world, tmp_path):
    """Every case of a patient lands in the same split, the same in every export."""
    for seed in range(4):
        _reviewed(world, world.paul_record, world.alice, png_bytes(seed=seed), correct_to="normal")
    _reviewed(world, world.other_a, world.bob, png_bytes(seed=9), correct_to="viral_pneumonia")
    splits = []
    for run in range(2):
        call_command("export_feedback", str(tmp_path / f"e{run}"), "--test-percent", "50")
        rows = list(csv.DictReader(open(tmp_path / f"e{run}" / "manifest.csv")))
        by_patient = {}  # here each patient's cases share a label: Paul's are normal, Olga's viral
        for r in rows:
            by_patient.setdefault(r["label"], set()).add(r["split"])
        assert all(len(s) == 1 for s in by_patient.values())
        splits.append(sorted((r["study_id"], r["split"]) for r in rows))
    assert splits[0] == splits[1]
    with pytest.raises(CommandError, match="between 0 and 90"):
        call_command("export_feedback", str(tmp_path / "x"), "--test-percent", "95")
    with pytest.raises(CommandError, match="No hospital"):
        call_command("export_feedback", str(tmp_path / "x"), "--hospital", "nowhere")


def test_export_uses_the_latest_verdict_of_a_study(world, tmp_path):
    study = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        diagnosis = make_diagnosis(study)
        services.correct_diagnosis(diagnosis, world.alice, "normal")
        services.correct_diagnosis(diagnosis, world.alice, "viral_pneumonia", "second look")
    call_command("export_feedback", str(tmp_path / "x"))
    assert [p.parent.name for p in (tmp_path / "x").rglob("*.png")] == ["viral_pneumonia"]
