"""The ``report.pdf`` realtime event: a signed report's PDF is ready (or could not be produced).

Pushed by the chat app's receiver when ``services.report_pdf_changed`` fires, and sent again to a
page that asks after (re)connecting (``{"type": "reports", "ids": […]}``), since pushes are
delivered at most once. ``static/js/live.js`` turns ``[data-report-pdf="<id>"]`` into the link.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse

from .models import PdfStatus


def report_pdf_event(hospital_slug: str, report_id: int, study_id: int, status: str) -> dict[str, Any]:
    return {
        "type": "report.pdf",
        "report_id": report_id,
        "study_id": study_id,
        "status": status,
        "label": PdfStatus(status).label,
        "url": reverse("reports:pdf", args=[hospital_slug, report_id]) if status == PdfStatus.READY else "",
    }
