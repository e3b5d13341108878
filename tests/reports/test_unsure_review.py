"""An indeterminate ("AI unsure") read and a coded refusal on the reports side: the review screen
and its feedback form, the heatmap colour scale, the signed report's snapshot, its PDF and page,
and the history timeline. No percentage is ever attached to an indeterminate read."""

from __future__ import annotations

import io
import re
from html import unescape

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled
from pypdf import PdfReader

from apps.reports import services
from apps.reports.models import Report
from apps.studies.storage import read_encrypted

from .helpers import make_diagnosis, write_report

pytestmark = pytest.mark.django_db

UNSURE_WORDING = "Indeterminate: bacterial or viral pneumonia"


def url(name, *args):
    return reverse(name, args=["st-mary", *args])


def _text(page: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _pdf_text(report: Report) -> str:
    with scopes_disabled():
        report = services.render_report_pdf_now(report.pk)
        data = read_encrypted(report.pdf_name, report.pdf_sha256)
    reader = PdfReader(io.BytesIO(data))
    return " ".join(" ".join((page.extract_text() or "") for page in reader.pages).split())


@pytest.fixture
def unsure_diagnosis(paul_study):
    return make_diagnosis(paul_study, indeterminate=True)


def test_review_shows_the_unsure_wording_and_no_percentage_for_it(client, world, paul_study, unsure_diagnosis):
    client.force_login(world.alice)
    html = client.get(url("reports:review", paul_study.pk)).content.decode()
    headline = re.search(r'<p class="ai-label">(.*?)</p>', html, re.S).group(1)
    assert _text(headline) == f"Chest X-ray: {UNSURE_WORDING}"
    assert "% confidence" not in html and "49% confidence" not in html
    assert "AI unsure." in html and "The AI could not decide between bacterial and viral pneumonia" in html
    # The bars stay (for reference), but none is marked as the AI's pick.
    assert "49%" in html and "47%" in html
    assert '<li class="top">' not in html and html.count('<li class="candidate">') == 2
    # The heatmap is a layer of the viewer with its colour scale; no ROI box (the map is not focal).
    assert f'{{"heatmapUrl": "{url("diagnosis:heatmap", paul_study.pk)}", "roi": null}}' in html
    assert "Heatmap colours:" in html and "more influence on the AI label" in html


def test_the_form_offers_every_class_of_an_unsure_result_and_preselects_none(
    client, world, paul_study, unsure_diagnosis
):
    client.force_login(world.alice)
    html = client.get(url("reports:review", paul_study.pk)).content.decode()
    assert "AI unsure: bacterial and viral pneumonia" in html and "AI suggests" not in html
    select = re.search(r'<select name="final_label".*?</select>', html, re.S).group(0)
    # Every class can be chosen, the hidden top class included; nothing is pre-selected.
    for code in ("normal", "bacterial_pneumonia", "viral_pneumonia"):
        assert f'<option value="{code}">' in select
    assert "selected>" not in select.replace('<option value="" selected>', "")


def test_the_doctors_label_on_an_unsure_read_is_recorded_when_signing(client, world, paul_study, unsure_diagnosis):
    from apps.diagnosis.models import Feedback

    report = write_report(paul_study, world.alice, final_label="bacterial_pneumonia")
    with scopes_disabled():
        services.save_draft(
            report,
            world.alice,
            findings="",
            impression="Bacterial.",
            final_label="bacterial_pneumonia",
            ai_comment="Lobar consolidation.",
        )
        services.sign_report(report, world.alice)
        [feedback] = Feedback.objects.filter(diagnosis=unsure_diagnosis)
    assert (feedback.action, feedback.corrected_label) == ("correct", "bacterial_pneumonia")
    assert feedback.doctor == world.alice and feedback.comment == "Lobar consolidation."
    client.force_login(world.alice)
    html = client.get(url("reports:review", paul_study.pk)).content.decode()
    assert "recorded the label <strong>Bacterial pneumonia</strong>" in html
    assert "corrected the AI label" not in html


def test_signed_report_keeps_the_unsure_wording_in_its_page_and_pdf(client, world, paul_study, unsure_diagnosis):
    report = write_report(paul_study, world.alice, final_label="viral_pneumonia", sign=True)
    with scopes_disabled():
        report = Report.objects.get(pk=report.pk)
    assert report.ai_indeterminate is True
    assert report.ai_candidates == ["bacterial_pneumonia", "viral_pneumonia"]
    assert report.ai_confidence is None and report.ai_label == "bacterial_pneumonia"
    assert report.ai_label_display == UNSURE_WORDING

    # Later reads do not change what was signed.
    with scopes_disabled():
        type(unsure_diagnosis).objects.filter(pk=unsure_diagnosis.pk).update(indeterminate=False, candidates=[])

    text = _pdf_text(report)
    assert f"The AI result: {UNSURE_WORDING}. The AI was unsure" in text
    assert "%" not in text and "confidence" not in text
    assert "Heatmap colours: less more influence on the AI label" in text

    client.force_login(world.alice)
    page = _text(client.get(url("reports:detail", report.pk)).content.decode())
    assert f"AI result at signing {UNSURE_WORDING}, model" in page
    assert "% confidence" not in page


def test_confident_pdf_shows_the_heatmap_colour_scale(world, paul_study, paul_diagnosis):
    report = write_report(paul_study, world.alice, final_label="viral_pneumonia", sign=True)
    text = _pdf_text(report)
    assert "The AI suggested: Viral pneumonia (70% confidence)" in text
    assert "Heatmap colours: less more influence on the AI label" in text
    assert "Indeterminate" not in text


def test_review_of_a_confident_read_has_the_scale_and_the_roi_box(client, world, paul_study, paul_diagnosis):
    client.force_login(world.alice)
    html = client.get(url("reports:review", paul_study.pk)).content.decode()
    assert "more influence on the AI label" in html and '"roi": [8, 16, 40, 48]' in html
    assert "AI suggests: <strong>Viral pneumonia</strong> (70%)" in html
    assert "AI unsure" not in html


def test_review_shows_the_refusal_code(client, world, paul_study):
    make_diagnosis(paul_study, refused=True, refusal_code="other_modality")
    client.force_login(world.alice)
    html = client.get(url("reports:review", paul_study.pk)).content.decode()
    assert "The AI did not read this image." in html and "it looks like a photograph" in html
    assert 'data-refusal-code="other_modality"' in html and "Reason: Not a chest X-ray or brain MRI" in html
    assert '{"heatmapUrl": "", "roi": null}' in html  # no heatmap layer


def test_timeline_shows_the_unsure_wording_without_a_percentage(client, world, paul_study, unsure_diagnosis):
    from apps.diagnosis import services as diagnosis_services

    with scopes_disabled():
        diagnosis_services.correct_diagnosis(unsure_diagnosis, world.alice, "viral_pneumonia")
    client.force_login(world.alice)
    html = _text(client.get(url("reports:timeline", world.paul_record.pk)).content.decode())
    assert f"AI second read of study #{paul_study.pk} {UNSURE_WORDING}" in html
    assert "% confidence" not in html
    assert "Doctor's label recorded on an unsure AI read" in html
    assert f"{UNSURE_WORDING} → Viral pneumonia" in html
    assert "Bacterial pneumonia" not in html  # the hidden top class is never shown as the AI's
