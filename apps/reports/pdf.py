"""Rendering a signed report to PDF with WeasyPrint.

The HTML comes from ``templates/reports/pdf.html`` (user text is escaped by the template).
Images are embedded as ``data:`` URIs built here from the decrypted files, and the URL fetcher
refuses every other URL — ``file://``, ``http(s)://``, anything — so nothing a doctor types can
make the renderer read a local file or reach the network.
"""

from __future__ import annotations

import base64
import io
import logging
from typing import Any

import numpy as np
from django.template.loader import render_to_string
from django.utils.formats import date_format
from django.utils.timezone import localtime
from PIL import Image
from weasyprint import HTML
from weasyprint.urls import URLFetcher

from apps.diagnosis.models import Diagnosis
from apps.studies.storage import read_encrypted

from . import ai
from .models import Report
from .plain import AI_SECTION_TITLE, DIFFERENT_CONCLUSION, patient_summary, study_type

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 480
DISCLAIMER = "AI results are assistive, not a diagnosis."
#: Tagged PDF for screen readers (structure tree, reading order, alt text, language, title).
PDF_VARIANT = "pdf/ua-1"


class RefusedURL(ValueError):
    """The renderer asked for a URL other than an embedded ``data:`` URI."""


class DataOnlyURLFetcher(URLFetcher):
    """A WeasyPrint URL fetcher that serves ``data:`` URIs and refuses everything else.

    Refused URLs are remembered in ``refused`` (for tests and logs). WeasyPrint treats the
    refusal as a missing resource and renders on without it.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allowed_protocols=("data",), allow_redirects=False, timeout=1, **kwargs)
        self.refused: list[str] = []

    def fetch(self, url: str, headers: Any = None) -> Any:
        if not url.lower().startswith("data:"):
            self.refused.append(url)
            log.warning("PDF renderer refused to fetch %s", url[:200])
            raise RefusedURL(f"Only embedded images are allowed in reports, not {url[:100]!r}")
        return super().fetch(url, headers)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE) -> bytes:
    image = image.copy()
    image.thumbnail((side, side))
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def study_thumbnail(report: Report) -> bytes | None:
    """A PNG thumbnail of the study's original image (PNG, JPEG or DICOM), or None."""
    study = report.study
    try:
        data = read_encrypted(study.file_name, study.file_sha256)
        from apps.diagnosis.pipeline.decode import decode_image

        decoded = decode_image(data, max_side=THUMBNAIL_SIDE)
        pixels = np.clip(decoded.pixels * 255.0, 0, 255).astype("uint8")
        return _thumbnail(Image.fromarray(pixels, "L"))
    except Exception:  # a missing image must not stop the signed report from rendering
        log.exception("No thumbnail for study %s", study.pk)
        return None


def overlay_thumbnail(report: Report, diagnosis: Diagnosis | None) -> bytes | None:
    if diagnosis is None:
        return None
    try:
        png = ai.overlay_png(diagnosis)
        if png is None:
            return None
        with Image.open(io.BytesIO(png)) as img:
            img.load()
            return _thumbnail(img)
    except Exception:
        log.exception("No heatmap thumbnail for report %s", report.pk)
        return None


def report_context(report: Report) -> dict[str, Any]:
    diagnosis = ai.latest(report.study)
    image = study_thumbnail(report)
    overlay = overlay_thumbnail(report, diagnosis)
    summary = patient_summary(report)
    kind = study_type(report.study)
    return {
        "title": f"{kind} report for {report.patient.full_name}, signed {date_format(localtime(report.signed_at))}",
        "summary": summary,
        "study_type": kind,
        "ai_section_title": AI_SECTION_TITLE,
        "different_conclusion": DIFFERENT_CONCLUSION,
        "report": report,
        "hospital": report.hospital,
        "patient": report.patient,
        "study": report.study,
        "ai_task": ai.display_label(report.ai_task),
        "image_uri": png_data_uri(image) if image else "",
        "overlay_uri": png_data_uri(overlay) if overlay else "",
        "disclaimer": DISCLAIMER,
    }


def render_html(report: Report) -> str:
    return render_to_string("reports/pdf.html", report_context(report))


def html_to_pdf(html: str, fetcher: DataOnlyURLFetcher | None = None) -> bytes:
    """WeasyPrint with no base URL and the data-only fetcher: nothing outside ``html`` is read.
    The PDF is PDF/UA-1 (tagged), so it takes its language from ``<html lang>`` and shows the
    ``<title>`` as the document title."""
    fetcher = fetcher or DataOnlyURLFetcher()
    return HTML(string=html, base_url=None, url_fetcher=fetcher).write_pdf(pdf_variant=PDF_VARIANT)


def render_report_pdf_bytes(report: Report, fetcher: DataOnlyURLFetcher | None = None) -> bytes:
    return html_to_pdf(render_html(report), fetcher)
