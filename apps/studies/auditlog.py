"""The hospital admin's audit log: one hospital's events, filtered, as a page or a CSV download.

The CSV is streamed row by row (a year of events does not sit in memory) and is safe to open in a
spreadsheet: a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would
be read as a formula there, so it gets a leading apostrophe (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from apps.accounts.auditchain import event_hash
from apps.accounts.models import AuditEvent, Hospital
from apps.accounts.tenancy import Tenant, tenant_scope

from .models import Patient

COLUMNS = (
    "event_id",
    "time_utc",
    "actor_id",
    "actor_email",
    "actor_name",
    "action",
    "object_type",
    "object_id",
    "object",
    "patient_id",
    "patient_mrn",
    "ip_address",
    "detail",
    "event_sha256",
)
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def events_of(tenant: Tenant) -> QuerySet[AuditEvent]:
    """The events the tenant may read (their hospital's, for its admins), newest first, each with
    ``patient_mrn`` (empty when there is none)."""
    mrn = Patient.objects.filter(hospital=tenant.hospital, pk=OuterRef("patient_id")).values("mrn")[:1]
    return AuditEvent.objects.visible_to(tenant).annotate(patient_mrn=Subquery(mrn))


def filtered(events: QuerySet[AuditEvent], filters: dict[str, Any]) -> QuerySet[AuditEvent]:
    """Apply the cleaned ``AuditFilterForm`` data: dates are whole days in the site's time zone."""
    if filters.get("date_from"):
        events = events.filter(created_at__gte=_start_of(filters["date_from"]))
    if filters.get("date_to"):
        events = events.filter(created_at__lt=_start_of(filters["date_to"] + dt.timedelta(days=1)))
    if filters.get("actor"):
        who = filters["actor"].strip()
        events = events.filter(Q(actor_email__icontains=who) | Q(actor_name__icontains=who))
    if filters.get("action"):
        events = events.filter(action=filters["action"])
    if filters.get("patient") is not None:
        events = events.filter(patient_id=filters["patient"].pk)
    return events


def _start_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def neutralise(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _row(event: AuditEvent) -> list[str]:
    cells = [
        str(event.pk),
        event.created_at.astimezone(dt.UTC).isoformat(),
        str(event.actor_id or ""),
        event.actor_email,
        event.actor_name,
        event.action,
        event.object_type,
        event.object_id,
        event.object_repr,
        str(event.patient_id or ""),
        event.patient_mrn or "",  # type: ignore[attr-defined]  # annotated by events_of
        event.ip_address or "",
        json.dumps(event.detail, ensure_ascii=False, sort_keys=True),
        event_hash(event),
    ]
    return [neutralise(cell) for cell in cells]


class _Line:
    """What ``csv.writer`` writes to: hands each formatted line back instead of storing it."""

    def write(self, line: str) -> str:
        return line


def csv_lines(hospital: Hospital, events: QuerySet[AuditEvent]) -> Iterator[str]:
    """The header and one line per event, read in chunks inside the hospital's scope (the
    response is streamed after the view, and its middleware scope, have returned)."""
    writer = csv.writer(_Line())
    yield writer.writerow(COLUMNS)
    with tenant_scope(hospital):
        for event in events.iterator(chunk_size=1000):
            yield writer.writerow(_row(event))
