"""The review screen with an AI read: heatmap, probabilities, refusal, feedback; and the AI
result carried into the signed report, its PDF and the history timeline."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled
from pypdf import PdfReader

from apps.accounts.models import AuditEvent
from apps.reports import services
from apps.reports.models import Report
from apps.studies.storage import read_encrypted

from .helpers import make_diagnosis, write_report

pytestmark = pytest.mark.django_db


def url(name, *args):
    return reverse(name, args=["st-mary", *args])


def _json_script(html: str, element_id: str) -> dict:
    start = html.index(f'<script id="{element_id}" type="application/json">')
    start = html.index(">", start) + 1
    return json.loads(html[start : html.index("</script>", start)])


def test_review_shows_heatmap_probabilities_and_model(client, world, paul_study, paul_diagnosis):
    client.force_login(world.alice)
    html = client.get(url("reports:review", paul_study.pk)).content.decode()
    config = _json_script(html, "viewer-review-config")
    assert config["imageUrl"] == url("studies:study_image", paul_study.pk)
    assert config["width"] == 64 and config["height"] == 64 and config["pixelSpacing"] is None
    # The heatmap is the viewer's layer, with the ROI box [8, 16, 40, 48] in image pixels.
    layers = _json_script(html, "viewer-review-layers")
    assert layers == {"heatmapUrl": url("diagnosis:heatmap", paul_study.pk), "roi": [8, 16, 40, 48]}
    assert "data-heatmap-toggle" in html and "data-heatmap-opacity" in html and "more influence on the AI label" in html
    for name, pct in (("Viral pneumonia", 70), ("Bacterial pneumonia", 20), ("Normal", 10)):
        assert name in html and f"{pct}%" in html
    assert "70% confidence" in html
    assert "chest reports-test (weights bbbbbbbbbbbb)" in html
    assert "assistive, not a diagnosis" in html
    assert 'name="ai_comment"' in html  # the doctor's read goes with the report


def test_review_shows_a_refusal_plainly(client, world, paul_study):
    make_diagnosis(paul_study, refused=True)
    client.force_login(world.alice)
    html = client.get(url("reports:review", paul_study.pk)).content.decode()
    assert "The AI did not read this image." in html
    assert "it looks like a photograph, not a medical image" in html
    assert 'name="ai_comment"' not in html  # no AI read to comment on
    assert "The AI made no read." in html
    assert 'name="findings"' in html  # the doctor can still report


def test_review_shows_a_modality_mismatch(client, world, paul_study):
    make_diagnosis(paul_study, modality_warning="The DICOM header says CT, but the image looks like a chest X-ray.")
    client.force_login(world.alice)
    html = client.get(url("reports:review", paul_study.pk)).content.decode()
    assert "Image type mismatch" in html and "The DICOM header says CT" in html


def test_signing_a_different_label_records_a_correction_of_the_ai(client, world, paul_study, paul_diagnosis):
    from apps.diagnosis.models import Feedback

    client.force_login(world.alice)
    fields = {
        "final_label": "bacterial_pneumonia",
        "findings": "Lobar consolidation.",
        "impression": "Bacterial pneumonia.",
        "ai_comment": "Lobar pattern.",
        "action": "sign",
    }
    client.confirm_identity()
    sign_page = client.post(url("reports:review", paul_study.pk), fields)["Location"]
    token = re.search(r'name="draft" value="([^"]+)"', client.get(sign_page).content.decode()).group(1)
    with scopes_disabled():
        draft = Report.objects.get(study=paul_study)
        assert not Feedback.objects.exists()  # nothing is recorded before the signature
    assert client.post(url("reports:sign", draft.pk), {"draft": token}).status_code == 302
    with scopes_disabled():
        [read] = Feedback.objects.filter(diagnosis=paul_diagnosis)
        assert (read.action, read.corrected_label, read.comment, read.doctor) == (
            "correct",
            "bacterial_pneumonia",
            "Lobar pattern.",
            world.alice,
        )
        assert AuditEvent.objects.filter(action="diagnosis.correct", actor=world.alice).exists()
    html = client.get(url("reports:review", paul_study.pk)).content.decode()
    assert "corrected the AI label to <strong>Bacterial pneumonia</strong>" in html and "Lobar pattern." in html


def test_signing_snapshots_the_ai_result_and_the_pdf_shows_it(world, paul_study, paul_diagnosis):
    report = write_report(paul_study, world.alice, final_label="viral_pneumonia", sign=True)
    with scopes_disabled():
        report = Report.objects.get(pk=report.pk)
        assert (report.ai_task, report.ai_label, report.ai_confidence) == ("chest", "viral_pneumonia", 0.7)
        assert "reports-test" in report.ai_model_version and "bbbbbbbbbbbb" in report.ai_model_version
        report = services.render_report_pdf_now(report.pk)
        data = read_encrypted(report.pdf_name, report.pdf_sha256)
    reader = PdfReader(io.BytesIO(data))
    text = " ".join(" ".join((page.extract_text() or "") for page in reader.pages).split())
    assert "The AI suggested: Viral pneumonia (70% confidence)" in text
    assert "chest reports-test" in text
    images = {image.data for page in reader.pages for image in page.images}
    assert len(images) == 2, "the study thumbnail and the heatmap thumbnail are embedded"


def test_timeline_shows_ai_reads_and_corrections(client, world, paul_study, paul_diagnosis):
    from apps.diagnosis import services as diagnosis_services

    with scopes_disabled():
        diagnosis_services.correct_diagnosis(paul_diagnosis, world.alice, "bacterial_pneumonia", "Lobar.")
    write_report(paul_study, world.alice, final_label="bacterial_pneumonia", sign=True)
    client.force_login(world.alice)
    html = client.get(url("reports:timeline", world.paul_record.pk)).content.decode()
    assert f"AI second read of study #{paul_study.pk}" in html and "Viral pneumonia (70% confidence)" in html
    assert "AI label corrected" in html and "Viral pneumonia → Bacterial pneumonia" in html
    assert "Report v1 signed" in html
    # Newest first: the report comes before the correction, which comes before the upload.
    assert html.index("Report v1 signed") < html.index("AI label corrected") < html.index("uploaded")
