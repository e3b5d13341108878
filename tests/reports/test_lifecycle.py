"""Report lifecycle: draft → signed (immutable) → amended (a new version; the old one stays)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.reports import services
from apps.reports.models import PdfStatus, Report, ReportLocked, ReportStatus

from .helpers import write_report

pytestmark = pytest.mark.django_db


def test_start_report_creates_one_draft_and_reuses_it(world, paul_study):
    with scopes_disabled():
        first = services.start_report(paul_study, world.alice)
        again = services.start_report(paul_study, world.alice)
        assert first.pk == again.pk
        assert first.status == ReportStatus.DRAFT and first.version == 1
        assert first.hospital_id == world.a.pk and first.patient_id == world.paul_record.pk
        assert AuditEvent.objects.filter(action="report.start", object_id=str(first.pk)).count() == 1


def test_only_a_doctor_caring_for_the_patient_writes_reports(world, paul_study):
    with scopes_disabled():
        for outsider in (world.bob, world.carol, world.paul, world.dora):
            with pytest.raises(services.NotAllowed):
                services.start_report(paul_study, outsider)
        assert not Report.objects.exists()


def test_signing_records_signer_time_and_locks_the_report(world, paul_draft, django_capture_on_commit_callbacks):
    with scopes_disabled(), django_capture_on_commit_callbacks() as callbacks:
        services.sign_report(paul_draft, world.alice)
    assert callbacks, "the PDF task is sent on commit"
    with scopes_disabled():
        report = Report.objects.get(pk=paul_draft.pk)
        assert report.status == ReportStatus.SIGNED
        assert report.signed_by == world.alice and report.signed_at is not None
        assert report.pdf_status == PdfStatus.PENDING
        event = AuditEvent.objects.get(action="report.sign", object_id=str(report.pk))
        assert event.actor == world.alice and event.hospital_id == world.a.pk

        # The service refuses every change…
        with pytest.raises(ReportLocked):
            services.save_draft(report, world.alice, findings="changed", impression="x", final_label="normal")
        with pytest.raises(ReportLocked):
            services.sign_report(report, world.alice)
        # …and so does the model, whatever path tries it.
        report.findings = "quietly changed"
        with pytest.raises(ReportLocked):
            report.save()
        with pytest.raises(ReportLocked):
            report.save(update_fields=["findings"])
        with pytest.raises(ReportLocked):
            report.delete()
        assert Report.objects.get(pk=report.pk).findings == "Clear lung fields."


def test_signing_needs_a_final_label_and_an_impression(world, paul_study):
    report = write_report(paul_study, world.alice, impression="  ", final_label="")
    with scopes_disabled():
        with pytest.raises(ValidationError) as exc:
            services.sign_report(report, world.alice)
        assert exc.value.message_dict == {
            "final_label": ["Final label: choose your conclusion before signing."],
            "impression": ["Impression: write your impression before signing."],
        }
        assert Report.objects.get(pk=report.pk).status == ReportStatus.DRAFT


def test_signing_notifies_the_patient(world, paul_draft):
    from apps.chat.models import Notification

    with scopes_disabled():
        services.sign_report(paul_draft, world.alice)
        note = Notification.objects.get(user=world.paul, kind="report_signed")
        assert note.hospital_id == world.a.pk
        assert note.url == f"/h/st-mary/my/reports/{paul_draft.pk}/"


def test_amending_creates_a_new_version_and_keeps_the_old_one(world, paul_signed):
    with scopes_disabled():
        v2 = services.amend_report(paul_signed, world.alice, reason="Consolidation missed on the first read.")
        assert v2.pk != paul_signed.pk and v2.version == 2 and v2.supersedes_id == paul_signed.pk
        assert v2.status == ReportStatus.DRAFT
        assert (v2.findings, v2.impression, v2.final_label) == (
            paul_signed.findings,
            paul_signed.impression,
            paul_signed.final_label,
        )
        assert v2.amendment_reason == "Consolidation missed on the first read."
        # Asking again returns the same open amendment.
        assert services.amend_report(paul_signed, world.alice, reason="Again.").pk == v2.pk
        # Until the amendment is signed, version 1 is still the valid report.
        assert Report.objects.get(pk=paul_signed.pk).status == ReportStatus.SIGNED

        services.save_draft(
            v2,
            world.alice,
            findings="Right lower lobe consolidation.",
            impression="Bacterial pneumonia.",
            final_label="bacterial_pneumonia",
        )
        services.sign_report(v2, world.alice)

        v1 = Report.objects.get(pk=paul_signed.pk)
        assert v1.status == ReportStatus.AMENDED and v1.amendment.pk == v2.pk
        assert v1.findings == "Clear lung fields." and v1.signed_by == world.alice  # still readable, unchanged
        v2 = Report.objects.get(pk=v2.pk)
        assert v2.status == ReportStatus.SIGNED and v2.final_label == "bacterial_pneumonia"
        assert services.current_report(paul_signed.study).pk == v2.pk
        assert v2.amendment_reason == "Consolidation missed on the first read."  # kept through the save
        amended = AuditEvent.objects.get(action="report.amend", object_id=str(v2.pk))
        assert amended.detail["reason"] == "Consolidation missed on the first read."
        signed = AuditEvent.objects.get(action="report.sign", object_id=str(v2.pk))
        assert signed.detail["amendment_reason"] == "Consolidation missed on the first read."
        # The superseded version cannot be amended a second time, nor a draft be amended.
        with pytest.raises(ReportLocked):
            services.amend_report(v1, world.alice, reason="Another reason.")


def test_an_amendment_needs_a_reason_to_start_and_to_be_signed(world, paul_signed):
    with scopes_disabled():
        with pytest.raises(ValidationError) as exc:
            services.amend_report(paul_signed, world.alice, reason="   ")
        assert "Reason for the amendment" in str(exc.value)
        assert not Report.objects.filter(supersedes=paul_signed).exists()
        v2 = services.amend_report(paul_signed, world.alice, reason="Wrong side.")
        services.save_draft(
            v2, world.alice, findings="x", impression="Revised.", final_label="normal", amendment_reason=""
        )
        with pytest.raises(ValidationError) as exc:
            services.sign_report(v2, world.alice)
        assert exc.value.message_dict == {
            "amendment_reason": ["Reason for the amendment: say why version 1 is being amended."]
        }


def test_signing_records_the_doctors_read_of_the_ai_result(world, paul_study):
    from apps.diagnosis.models import Feedback

    from .helpers import make_diagnosis

    diagnosis = make_diagnosis(paul_study)  # the AI suggests viral pneumonia
    agree = write_report(paul_study, world.alice, final_label="viral_pneumonia")
    with scopes_disabled():
        services.save_draft(
            agree, world.alice, findings="", impression="Viral.", final_label="viral_pneumonia", ai_comment="Agree."
        )
        assert not Feedback.objects.exists()  # a draft records nothing
        services.sign_report(agree, world.alice)
        [read] = Feedback.objects.filter(diagnosis=diagnosis)
        assert (read.action, read.doctor, read.comment) == ("confirm", world.alice, "Agree.")

        amendment = services.amend_report(agree, world.alice, reason="Second look.")
        services.save_draft(
            amendment, world.alice, findings="", impression="Bacterial.", final_label="bacterial_pneumonia"
        )
        services.sign_report(amendment, world.alice)
        newest = Feedback.objects.filter(diagnosis=diagnosis).order_by("-pk").first()
        assert (newest.action, newest.corrected_label) == ("correct", "bacterial_pneumonia")

        # A free-text conclusion is not a label the model knows: no read is recorded for it.
        again = services.amend_report(amendment, world.alice, reason="Third look.")
        services.save_draft(again, world.alice, findings="", impression="Other.", final_label="Rib fracture")
        services.sign_report(again, world.alice)
        assert Feedback.objects.filter(diagnosis=diagnosis).count() == 2


def test_a_draft_cannot_be_amended_and_a_signed_study_cannot_get_a_second_draft(world, paul_draft):
    with scopes_disabled():
        with pytest.raises(ReportLocked):
            services.amend_report(paul_draft, world.alice, reason="Typo.")
        services.sign_report(paul_draft, world.alice)
        with pytest.raises(ReportLocked):
            services.start_report(paul_draft.study, world.alice)


def test_labels_read_as_people_write_them():
    from apps.reports.ai import display_label, labels_for

    assert display_label("bacterial_pneumonia") == "Bacterial pneumonia"
    assert display_label("no_tumor") == "No tumour"
    assert display_label("pleural_effusion") == "Pleural effusion"
    assert display_label("Healed rib fracture") == "Healed rib fracture"
    assert display_label("") == ""
    assert [code for code, _ in labels_for("brain")] == ["glioma", "meningioma", "no_tumor", "pituitary"]
    assert [code for code, _ in labels_for("chest_xray")] == ["normal", "bacterial_pneumonia", "viral_pneumonia"]
