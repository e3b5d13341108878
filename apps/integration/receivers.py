"""Reactions to other apps' signals (connected in IntegrationConfig.ready())."""

from __future__ import annotations

from typing import Any

from apps.accounts.models import Hospital

from .services import fhir_endpoint


def on_report_signed(sender: Any, *, hospital_id: int, report_id: int, **kwargs: Any) -> None:
    """A report or amendment was signed: send it to the hospital's FHIR server, if it has one
    (the task is sent when the signing commits)."""
    from .tasks import export_report_fhir

    hospital = Hospital.objects.get(pk=hospital_id)
    if fhir_endpoint(hospital) is not None:
        export_report_fhir.delay(hospital_id=hospital_id, report_id=report_id)
