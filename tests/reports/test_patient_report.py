"""What a patient reads: the doctor's conclusion first, the AI second read in its own labelled
section (saying so when the doctor concluded otherwise), plain-language explanations of the
report's words, the key image, report cards that never read alike, and a tagged PDF."""

from __future__ import annotations

import io
import re
from html import unescape

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled
from pypdf import PdfReader

from apps.reports import services
from apps.reports.glossary import glossary, terms_in
from apps.reports.plain import AI_SECTION_TITLE, DIFFERENT_CONCLUSION
from apps.studies.storage import read_encrypted

from ..factories import make_study
from .helpers import make_diagnosis, write_report

pytestmark = pytest.mark.django_db

VIRAL_FINDINGS = "Bilateral perihilar interstitial opacities. No consolidation or pleural effusion."


def url(name, *args):
    return reverse(name, args=["st-mary", *args])


def _text(page: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _signed_pdf(report):
    with scopes_disabled():
        report = services.render_report_pdf_now(report.pk)
        return read_encrypted(report.pdf_name, report.pdf_sha256)


def _pdf_text(data: bytes) -> str:
    reader = PdfReader(io.BytesIO(data))
    return " ".join(" ".join((page.extract_text() or "") for page in reader.pages).split())


@pytest.fixture
def disagreed(world, paul_study):
    """The AI said viral pneumonia (70%); Dr Alice concluded bacterial pneumonia."""
    from apps.studies.models import Study

    with scopes_disabled():
        make_diagnosis(paul_study)
        Study.objects.filter(pk=paul_study.pk).update(modality="chest_xray")
    return write_report(
        paul_study,
        world.alice,
        findings="Right lower zone consolidation.",
        impression="Lobar pneumonia, likely bacterial.",
        final_label="bacterial_pneumonia",
        sign=True,
    )


def test_glossary_explains_the_longest_phrase_once_in_order():
    terms = terms_in("Viral pneumonia", VIRAL_FINDINGS)
    assert [t.term for t in terms] == [
        "Viral pneumonia",
        "Bilateral perihilar interstitial opacities",
        "Consolidation",
        "Pleural effusion",
    ]
    # Whole words only, any case; every term of the data file has an explanation.
    assert terms_in("Abnormality: GLIOMA.")[0].term == "Glioma"
    assert terms_in("gliomas and non-effusion-like") == []
    assert all(text.strip() for text in glossary().values())
    for label in ("glioma", "meningioma", "pituitary tumour", "no tumour", "bacterial pneumonia"):
        assert label in glossary()


def test_pdf_is_tagged_and_leads_with_the_doctors_conclusion(world, disagreed):
    data = _signed_pdf(disagreed)
    reader = PdfReader(io.BytesIO(data))
    root = reader.trailer["/Root"]
    assert root["/MarkInfo"]["/Marked"].value is True
    assert "/StructTreeRoot" in root
    assert root["/Lang"] == "en"
    assert root["/ViewerPreferences"]["/DisplayDocTitle"].value is True
    assert reader.metadata.title.startswith("Chest X-ray report for Paul Potter, signed ")
    text = _pdf_text(data)
    conclusion = text.index("Your doctor's conclusion Bacterial pneumonia Lobar pneumonia, likely bacterial.")
    ai = text.index(AI_SECTION_TITLE)
    assert conclusion < text.index("Right lower zone consolidation.") < ai
    assert text.index(DIFFERENT_CONCLUSION) > ai
    assert "The AI suggested: Viral pneumonia (70% confidence)" in text
    words = text.index("Words in this report")
    assert words > ai and "Consolidation Part of the lung where the air spaces" in text[words:]
    assert "Right lower zone The lower part of the right lung" in text[words:]


def test_pdf_of_an_agreeing_read_does_not_claim_a_difference(world, paul_study, paul_diagnosis):
    report = write_report(paul_study, world.alice, final_label="viral_pneumonia", sign=True)
    text = _pdf_text(_signed_pdf(report))
    assert DIFFERENT_CONCLUSION not in text
    assert "The AI suggested: Viral pneumonia (70% confidence)" in text


def test_refused_and_unread_images_are_worded_as_such(client, world):
    with scopes_disabled():
        refused_study = make_study(world.paul_record, world.alice)
        unread_study = make_study(world.paul_record, world.alice)
        make_diagnosis(refused_study, refused=True)
    refused = write_report(refused_study, world.alice, final_label="normal", sign=True)
    unread = write_report(unread_study, world.alice, final_label="normal", sign=True)
    client.force_login(world.paul)
    page = _text(client.get(url("reports:my_report", refused.pk)).content.decode())
    assert "The AI did not read this image: it looks like a photograph, not a medical image" in page
    assert DIFFERENT_CONCLUSION not in page
    page = _text(client.get(url("reports:my_report", unread.pk)).content.decode())
    assert "No AI read was available for this image." in page
    assert "The AI did not read this image" in _pdf_text(_signed_pdf(refused))


def test_patient_page_conclusion_first_then_glossary_image_and_ai(client, world, disagreed):
    client.force_login(world.paul)
    response = client.get(url("reports:my_report", disagreed.pk))
    assert response.status_code == 200
    html = response.content.decode()
    page = _text(html)
    order = [
        page.index("What your doctor concluded Bacterial pneumonia"),
        page.index("Words in this report"),
        page.index("Your image"),
        page.index(AI_SECTION_TITLE),
        page.index(DIFFERENT_CONCLUSION),
    ]
    assert order == sorted(order)
    assert "Consolidation Part of the lung where the air spaces" in page
    # The key image (the study's image through the patient's own route), never the AI heatmap.
    assert url("reports:my_report_image", disagreed.pk) in html
    assert "/studies/" not in html and "overlay" not in html and "heatmap" not in html.lower()
    image = client.get(url("reports:my_report_image", disagreed.pk))
    assert image.status_code == 200 and image["Content-Type"] == "image/png"
    with scopes_disabled():
        study = disagreed.study
        assert b"".join(image.streaming_content if image.streaming else [image.content]) == read_encrypted(
            study.file_name, study.file_sha256
        )
        from apps.accounts.models import AuditEvent

        assert AuditEvent.objects.filter(action="report.view_image", actor=world.paul).count() == 1


def test_home_cards_name_the_study_type_and_the_time(client, world):
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from apps.studies.models import Study

    with scopes_disabled():
        first, second = make_study(world.paul_record, world.alice), make_study(world.paul_record, world.alice)
        day = datetime(2026, 11, 29, 9, 5, tzinfo=ZoneInfo("UTC"))
        Study.objects.filter(pk=first.pk).update(created_at=day, modality="chest_xray")
        Study.objects.filter(pk=second.pk).update(created_at=day.replace(hour=14, minute=40), modality="chest_xray")
    for study in (first, second):
        write_report(study, world.alice, sign=True)
    client.force_login(world.paul)
    html = client.get(url("reports:my_home")).content.decode()
    titles = [_text(t) for t in re.findall(r"<h3>(.*?)</h3>", html)]
    assert len(titles) == 2 and len(set(titles)) == 2
    for title in titles:
        assert title.startswith("Chest X-ray report from 29 November 2026 at ")
