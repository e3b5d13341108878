"""Review screen, report pages, PDF downloads (permissions and audit), patient portal, timeline."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.reports.models import Report, ReportStatus

from ..factories import make_study
from .helpers import write_report

pytestmark = pytest.mark.django_db


def url(name, *args):
    return reverse(name, args=["st-mary", *args])


def as_user(client, user):
    """Signed in, and just re-authenticated (signing needs it; its own tests: test_second_factor)."""
    client.force_login(user)
    client.confirm_identity()
    return client


# --- Review screen ---------------------------------------------------------------------------


def test_review_screen_renders_for_the_assigned_doctor(client, world, paul_study):
    response = as_user(client, world.alice).get(url("reports:review", paul_study.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "assistive, not a diagnosis" in html
    assert url("studies:study_image", paul_study.pk) in html
    assert "Paul Potter" in html and "A-0001" in html
    assert 'name="action" value="sign"' in html and 'name="action" value="save"' in html
    with scopes_disabled():
        assert AuditEvent.objects.filter(
            action="study.review", actor=world.alice, object_id=str(paul_study.pk)
        ).exists()


@pytest.mark.parametrize(("persona", "status"), [("bob", 404), ("dora", 404), ("paul", 403), ("carol", 403)])
def test_review_screen_is_refused_to_others(client, world, paul_study, persona, status):
    response = as_user(client, getattr(world, persona)).get(url("reports:review", paul_study.pk))
    assert response.status_code == status


def test_review_screen_without_ai_result_says_so(client, world, paul_study):
    html = as_user(client, world.alice).get(url("reports:review", paul_study.pk)).content.decode()
    assert "No AI result yet" in html
    # live.js fills in the status and swaps in the result when the AI read finishes.
    assert f'data-study-status="{paul_study.pk}"' in html and f'data-live-reload-on-done="{paul_study.pk}"' in html
    assert 'id="study-result"' in html


def _sign_through_the_confirmation(c, study, fields):
    """Post the form with action=sign, read the confirmation page it leads to, then confirm."""
    response = c.post(url("reports:review", study.pk), {**fields, "action": "sign"})
    with scopes_disabled():
        draft = Report.objects.get(study=study, status=ReportStatus.DRAFT)
    assert response.status_code == 302 and response["Location"] == url("reports:sign", draft.pk)
    html = c.get(response["Location"]).content.decode()
    assert "Confirm and sign" in html
    assert draft.impression in html  # the doctor sees what they sign
    token = re.search(r'name="draft" value="([^"]+)"', html).group(1)
    return c.post(url("reports:sign", draft.pk), {"draft": token})


def test_the_final_label_starts_empty_with_the_ai_suggestion_beside_it(client, world, paul_study):
    from .helpers import make_diagnosis

    make_diagnosis(paul_study)  # the AI suggests viral pneumonia, 70 %
    html = as_user(client, world.alice).get(url("reports:review", paul_study.pk)).content.decode()
    select = re.search(r'<select name="final_label".*?</select>', html, re.S).group(0)
    assert "selected" not in select.replace('value="" selected', "")
    assert re.search(r'<option value="" selected>Choose your conclusion…</option>', select)
    assert "AI suggests: <strong>Viral pneumonia</strong> (70%)" in html


def test_save_draft_then_sign_through_the_form(client, world, paul_study):
    c = as_user(client, world.alice)
    response = c.post(
        url("reports:review", paul_study.pk),
        {"findings": "Clear lungs.", "impression": "Normal study.", "final_label": "normal", "action": "save"},
    )
    assert response.status_code == 302
    with scopes_disabled():
        report = Report.objects.get(study=paul_study)
        assert report.status == ReportStatus.DRAFT and report.findings == "Clear lungs."

    # Signing without an impression or a label: the draft is saved, nothing is signed, and an error
    # summary at the top names each field and links to it.
    response = c.post(
        url("reports:review", paul_study.pk),
        {"findings": "Clear lungs.", "impression": "", "final_label": "", "action": "sign"},
    )
    assert response.status_code == 400
    html = response.content.decode()
    summary = re.search(r'<div class="error-summary".*?</div>', html, re.S).group(0)
    assert 'href="#id_final_label"' in summary and "Final label: choose your conclusion before signing." in summary
    assert 'href="#id_impression"' in summary and "Impression: write your impression before signing." in summary
    assert html.index("error-summary") < html.index('id="id_final_label"')

    response = _sign_through_the_confirmation(
        c,
        paul_study,
        {
            "findings": "Clear lungs.",
            "impression": "Normal study.",
            "final_label": "__other__",
            "final_label_other": "Healed rib fracture",
        },
    )
    assert response.status_code == 302
    with scopes_disabled():
        report = Report.objects.get(study=paul_study)
        assert report.status == ReportStatus.SIGNED and report.final_label == "Healed rib fracture"
        assert report.signed_by == world.alice

    # The signed report is shown read-only, with an Amend button and no editable form.
    html = c.get(url("reports:review", paul_study.pk)).content.decode()
    assert "Amend this report" in html and 'name="findings"' not in html
    assert "Healed rib fracture" in html
    assert f'data-report-pdf="{report.pk}" data-pdf-status="pending"' in html  # live.js swaps in the link

    # A forged post cannot change it.
    response = c.post(
        url("reports:review", paul_study.pk),
        {"findings": "Tampered.", "impression": "Tampered.", "final_label": "normal", "action": "save"},
    )
    assert response.status_code == 400
    with scopes_disabled():
        assert Report.objects.get(pk=report.pk).findings == "Clear lungs."


def test_signing_needs_the_confirmation_of_the_draft_that_was_shown(client, world, paul_study):
    c = as_user(client, world.alice)
    fields = {"findings": "", "impression": "Normal study.", "final_label": "normal"}
    c.post(url("reports:review", paul_study.pk), {**fields, "action": "sign"})
    with scopes_disabled():
        draft = Report.objects.get(study=paul_study)
    # A post without the token of the draft shown (or after the draft changed) is asked again.
    for data in ({}, {"draft": "2001-01-01T00:00:00+00:00"}):
        response = c.post(url("reports:sign", draft.pk), data)
        assert response.status_code == 409
        assert "The draft changed after you were asked to confirm it" in response.content.decode()
    with scopes_disabled():
        assert Report.objects.get(pk=draft.pk).status == ReportStatus.DRAFT


def test_an_incomplete_draft_is_not_offered_for_signature(client, world, paul_study):
    draft = write_report(paul_study, world.alice, impression="")
    response = as_user(client, world.alice).get(url("reports:sign", draft.pk))
    assert response.status_code == 302 and response["Location"] == url("reports:review", paul_study.pk)


def test_amend_through_the_form_keeps_version_one_readable(client, world, paul_signed):
    c = as_user(client, world.alice)
    # Without a reason, the amendment is refused and the summary says why.
    response = c.post(url("reports:amend", paul_signed.pk), {"reason": " "})
    assert response.status_code == 400
    assert 'href="#amend_reason"' in response.content.decode()
    assert "Reason for the amendment: say why this report is being amended." in response.content.decode()
    response = c.post(url("reports:amend", paul_signed.pk), {"reason": "Consolidation missed."})
    assert response.status_code == 302
    with scopes_disabled():
        v2 = Report.objects.get(supersedes=paul_signed)
    html = c.get(url("reports:review", paul_signed.study_id)).content.decode()
    assert "You are amending version 1" in html and 'name="findings"' in html
    assert "Consolidation missed." in html  # the reason, editable until signed

    _sign_through_the_confirmation(
        c,
        paul_signed.study,
        {
            "findings": "Revised.",
            "impression": "Revised impression.",
            "final_label": "viral_pneumonia",
            "amendment_reason": "Consolidation missed on the first read.",
        },
    )
    with scopes_disabled():
        assert Report.objects.get(pk=v2.pk).status == ReportStatus.SIGNED
        assert Report.objects.get(pk=v2.pk).amendment_reason == "Consolidation missed on the first read."
        assert Report.objects.get(pk=paul_signed.pk).status == ReportStatus.AMENDED
    old = c.get(url("reports:detail", paul_signed.pk))
    assert old.status_code == 200
    assert "Clear lung fields." in old.content.decode() and "replaced by an amendment" in old.content.decode()
    new = c.get(url("reports:detail", v2.pk)).content.decode()
    assert "Reason for the amendment" in new and "Consolidation missed on the first read." in new
    history = c.get(url("reports:timeline", paul_signed.patient_id)).content.decode()
    assert "Reason for the amendment: Consolidation missed on the first read." in history


@pytest.mark.parametrize(("persona", "status"), [("bob", 404), ("dora", 404), ("paul", 403), ("carol", 403)])
def test_only_the_assigned_doctor_can_amend(client, world, paul_signed, persona, status):
    response = as_user(client, getattr(world, persona)).post(url("reports:amend", paul_signed.pk), {"reason": "x"})
    assert response.status_code == status
    with scopes_disabled():
        assert not Report.objects.filter(supersedes=paul_signed).exists()


# --- PDF downloads --------------------------------------------------------------------------


@pytest.mark.parametrize("persona", ["paul", "alice", "carol"])
def test_pdf_download_is_allowed_and_audited(client, world, paul_signed_pdf, persona):
    user = getattr(world, persona)
    response = as_user(client, user).get(url("reports:pdf", paul_signed_pdf.pk))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response.content.startswith(b"%PDF")
    assert "attachment" in response["Content-Disposition"] and "A-0001" in response["Content-Disposition"]
    assert "no-store" in response["Cache-Control"]
    with scopes_disabled():
        event = AuditEvent.objects.get(action="report.download", actor=user)
        assert event.object_id == str(paul_signed_pdf.pk) and event.hospital_id == world.a.pk


@pytest.mark.parametrize("persona", ["bob", "dora"])
def test_pdf_download_is_refused_to_other_doctors(client, world, paul_signed_pdf, persona):
    response = as_user(client, getattr(world, persona)).get(url("reports:pdf", paul_signed_pdf.pk))
    assert response.status_code == 404
    with scopes_disabled():
        assert not AuditEvent.objects.filter(action="report.download").exists()


def test_patient_cannot_download_a_draft_or_another_patients_report(client, world, paul_draft, olga_signed):
    c = as_user(client, world.paul)
    assert c.get(url("reports:pdf", paul_draft.pk)).status_code == 404
    assert c.get(url("reports:pdf", olga_signed.pk)).status_code == 404
    # Even his own doctor gets no PDF for a draft.
    assert as_user(client, world.alice).get(url("reports:pdf", paul_draft.pk)).status_code == 404


def test_pdf_not_ready_yet_says_so(client, world, paul_signed):
    response = as_user(client, world.paul).get(url("reports:pdf", paul_signed.pk))
    assert response.status_code == 202
    assert "being prepared" in response.content.decode()


# --- Patient portal --------------------------------------------------------------------------


def test_portal_shows_only_the_patients_signed_reports(client, world, paul_signed_pdf, olga_signed):
    with scopes_disabled():
        second_study = make_study(world.paul_record, world.alice)
    other_study_draft = write_report(second_study, world.alice, findings="DRAFT-ONLY findings")
    response = as_user(client, world.paul).get(url("reports:my_home"))
    assert response.status_code == 200
    html = response.content.decode()
    assert url("reports:my_report", paul_signed_pdf.pk) in html
    assert url("reports:pdf", paul_signed_pdf.pk) in html
    assert url("reports:my_report", other_study_draft.pk) not in html and "DRAFT-ONLY" not in html
    assert url("reports:my_report", olga_signed.pk) not in html and "Olga" not in html
    assert "Your report is ready" in html  # the notification written when it was signed
    # No study pages, images or AI results are linked from the portal.
    assert "/studies/" not in html and "/review/" not in html


def test_portal_report_page(client, world, paul_signed_pdf):
    c = as_user(client, world.paul)
    response = c.get(url("reports:my_report", paul_signed_pdf.pk))
    assert response.status_code == 200
    html = response.content.decode()
    assert "Clear lung fields." in html and "Dr Alice Adams" in html and "Normal" in html
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="report.view", actor=world.paul).exists()


def test_portal_never_shows_drafts_or_other_patients(client, world, paul_draft, olga_signed):
    c = as_user(client, world.paul)
    assert c.get(url("reports:my_report", paul_draft.pk)).status_code == 404
    assert c.get(url("reports:my_report", olga_signed.pk)).status_code == 404
    # Patients have no access to study pages or the review screen either.
    assert c.get(url("reports:review", paul_draft.study_id)).status_code == 403


@pytest.mark.parametrize(("persona", "status"), [("alice", 403), ("carol", 403), ("dora", 404)])
def test_portal_is_for_patients(client, world, persona, status):
    assert as_user(client, getattr(world, persona)).get(url("reports:my_home")).status_code == status


def test_superseded_version_points_the_patient_to_the_new_one(client, world, paul_signed):
    from apps.reports import services

    with scopes_disabled():
        v2 = services.amend_report(paul_signed, world.alice, reason="Typo in the findings.")
        services.save_draft(v2, world.alice, findings="Updated.", impression="Updated.", final_label="normal")
        # Before the amendment is signed, the patient sees only version 1, and no warning.
        assert not Report.objects.filter(pk=v2.pk, status=ReportStatus.SIGNED).exists()
    c = as_user(client, world.paul)
    assert c.get(url("reports:my_report", v2.pk)).status_code == 404
    with scopes_disabled():
        services.sign_report(v2, world.alice)
    html = c.get(url("reports:my_report", paul_signed.pk)).content.decode()
    assert "Read the latest version" in html and url("reports:my_report", v2.pk) in html


# --- Timeline ---------------------------------------------------------------------------------


def test_timeline_lists_studies_and_reports(client, world, paul_signed):
    from apps.reports import services

    with scopes_disabled():
        services.amend_report(paul_signed, world.alice, reason="Typo in the findings.")
    for user in (world.alice, world.carol):
        response = as_user(client, user).get(url("reports:timeline", world.paul_record.pk))
        assert response.status_code == 200
        html = response.content.decode()
        assert f"Study #{paul_signed.study_id} uploaded" in html
        assert "Report v1 signed" in html and "Report v2 started (draft)" in html
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="patient.timeline", actor=world.carol).exists()


@pytest.mark.parametrize(("persona", "status"), [("bob", 404), ("dora", 404), ("paul", 403)])
def test_timeline_is_refused_to_others(client, world, persona, status):
    response = as_user(client, getattr(world, persona)).get(url("reports:timeline", world.paul_record.pk))
    assert response.status_code == status
