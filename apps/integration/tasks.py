"""Celery tasks of the integration app. Thin wrappers: they are sent ids, run in the hospital's
scope (``TenantTask``) and call the service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from apps.accounts import audit
from apps.accounts.tenancy import TenantTask
from apps.reports.models import PdfStatus, Report

from .services import FhirEndpointError, fhir_endpoint, send_report_fhir

log = logging.getLogger(__name__)


@shared_task(bind=True, base=TenantTask, acks_late=True, reject_on_worker_lost=True, soft_time_limit=60, time_limit=90)
def export_report_fhir(self, *, hospital_id: int, report_id: int) -> str:
    """Send a signed report to the hospital's FHIR server, with retries (exponential back-off)
    while the server is unreachable or refuses, and while the PDF is still being rendered."""
    report = Report.objects.select_related("hospital", "patient", "study", "signed_by").filter(pk=report_id).first()
    if report is None or not report.is_signed:
        return "nothing-to-send"
    endpoint = fhir_endpoint(report.hospital)
    if endpoint is None:
        return "not-configured"
    retries_left = self.request.retries < settings.FHIR_EXPORT_MAX_RETRIES
    countdown = settings.FHIR_EXPORT_RETRY_SECONDS * 2**self.request.retries
    if report.pdf_status == PdfStatus.PENDING and retries_left:
        raise self.retry(countdown=countdown, max_retries=settings.FHIR_EXPORT_MAX_RETRIES)
    try:
        send_report_fhir(report, endpoint, attempt=self.request.retries + 1)
    except FhirEndpointError as exc:
        if retries_left:
            raise self.retry(exc=exc, countdown=countdown, max_retries=settings.FHIR_EXPORT_MAX_RETRIES) from exc
        log.error("Report %s was not sent to the FHIR server: %s", report_id, exc)
        audit.record("report.fhir_export_failed", hospital=report.hospital, obj=report, error=str(exc)[:200])
        return "failed"
    return "sent"
