"""Celery tasks of the reports app. Thin wrappers: they are sent ids, run in the hospital's scope
(``TenantTask``) and call the service."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError

from apps.accounts.tenancy import TenantTask


@shared_task(
    base=TenantTask,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),  # database hiccups only; a template error will not heal
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=60,
    time_limit=90,
)
def render_report_pdf(*, hospital_id: int, report_id: int) -> str:
    """Render and store the PDF of a signed report. Safe to run twice (the second run is a no-op)."""
    from .services import render_report_pdf_now

    report = render_report_pdf_now(report_id)
    return report.pdf_status if report is not None else "nothing-to-render"
