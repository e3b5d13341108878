"""Celery tasks of the reports app. Thin wrappers: they take ids, re-enter the tenant scope and
call the service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError
from django_scopes import scopes_disabled

from apps.accounts.tenancy import tenant_scope

from .models import Report

log = logging.getLogger(__name__)


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError,),  # database hiccups only; a template error will not heal
    retry_backoff=True,
    max_retries=3,
    soft_time_limit=60,
    time_limit=90,
)
def render_report_pdf(report_id: int) -> str:
    """Render and store the PDF of a signed report. Safe to run twice (the second run is a no-op)."""
    from .services import render_report_pdf_now

    # The id is all the task gets: look up which hospital it belongs to (one column, nothing
    # else), then do the work inside that hospital's scope like any other entry point.
    with scopes_disabled():
        hospital_id = Report.objects.filter(pk=report_id).values_list("hospital_id", flat=True).first()
    if hospital_id is None:
        log.warning("Report %s no longer exists; nothing to render", report_id)
        return "missing"
    with tenant_scope(hospital_id):
        report = render_report_pdf_now(report_id)
    return report.pdf_status if report is not None else "not-signed"
