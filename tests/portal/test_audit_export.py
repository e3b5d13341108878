"""The hospital admin's audit log: filters (dates, who, event, patient) on the page and in the CSV
export, only their own hospital's events, a streamed download that is safe to open in a
spreadsheet (no formula injection), and the export audited in turn."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from apps.accounts import audit
from apps.accounts.auditchain import event_hash
from apps.accounts.models import AuditEvent, Membership, Role
from apps.studies.auditlog import COLUMNS, neutralise
from tests.factories import PatientFactory, UserFactory

BACKEND = "django.contrib.auth.backends.ModelBackend"


@pytest.fixture
def carol(client, world):
    client.force_login(world.carol, backend=BACKEND)
    return client


def export(client, world, **filters) -> list[dict[str, str]]:
    response = client.get(reverse("studies:audit_export", args=[world.a.slug]), filters)
    assert response.status_code == 200
    assert response.streaming and response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-st-mary-')
    text = b"".join(response.streaming_content).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == COLUMNS
    return [dict(zip(COLUMNS, row, strict=True)) for row in rows[1:]]


def page(client, world, **filters):
    return client.get(reverse("studies:audit_log", args=[world.a.slug]), filters)


def hospital_of(event_ids) -> set[int]:
    with scopes_disabled():
        return set(AuditEvent.objects.filter(pk__in=event_ids).values_list("hospital_id", flat=True))


def test_the_export_holds_the_hospitals_events_oldest_first(carol, world):
    audit.record("patient.view", hospital=world.a, actor=world.alice, obj=world.paul_record, ip="203.0.113.7")
    audit.record("patient.view", hospital=world.b, actor=world.dora, obj=world.bea_record)
    rows = export(carol, world)
    ids = [int(r["event_id"]) for r in rows]
    assert ids == sorted(ids) and hospital_of(ids) == {world.a.pk}
    view = next(r for r in rows if r["action"] == "patient.view")
    assert (view["actor_email"], view["actor_name"]) == ("alice@st-mary.example", "Dr Alice Adams")
    assert (view["patient_id"], view["patient_mrn"]) == (str(world.paul_record.pk), "A-0001")
    assert view["ip_address"] == "203.0.113.7" and view["time_utc"].endswith("+00:00")
    with scopes_disabled():
        assert view["event_sha256"] == event_hash(AuditEvent.objects.get(pk=view["event_id"]))
    assert "dora@riverside.example" not in str(rows)


def test_another_hospitals_admin_exports_only_their_own(client, world):
    with scopes_disabled():
        rita = UserFactory(email="rita@riverside.example", full_name="Rita Admin")
        Membership.objects.create(user=rita, hospital=world.b, role=Role.HOSPITAL_ADMIN)
    audit.record("patient.view", hospital=world.a, actor=world.alice, obj=world.paul_record)
    client.force_login(rita, backend=BACKEND)
    response = client.get(reverse("studies:audit_export", args=[world.b.slug]))
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows and hospital_of([int(r["event_id"]) for r in rows]) == {world.b.pk}
    # ...and hospital A's export is not hers to take.
    assert client.get(reverse("studies:audit_export", args=[world.a.slug])).status_code == 404


def test_only_hospital_admins_read_the_log(world):
    from apps.accounts.tenancy import resolve_tenant, tenant_scope

    with tenant_scope(world.a):
        assert AuditEvent.objects.visible_to(resolve_tenant(world.alice, world.a.slug)).count() == 0
        carols = AuditEvent.objects.visible_to(resolve_tenant(world.carol, world.a.slug))
        assert carols.count() > 0 and set(carols.values_list("hospital_id", flat=True)) == {world.a.pk}


def test_filters_by_event_who_patient_and_dates(carol, world):
    audit.record("patient.view", hospital=world.a, actor=world.alice, obj=world.paul_record)
    audit.record("patient.view", hospital=world.a, actor=world.bob, obj=world.other_a)
    audit.record("study.view", hospital=world.a, actor=world.alice, obj=world.paul_record)

    assert {r["action"] for r in export(carol, world, action="patient.view")} == {"patient.view"}
    assert {r["actor_email"] for r in export(carol, world, actor="BOB@")} == {"bob@st-mary.example"}
    assert {r["actor_email"] for r in export(carol, world, actor="Alice Adams")} == {"alice@st-mary.example"}
    by_patient = export(carol, world, patient="a-0002")
    assert by_patient and {r["patient_mrn"] for r in by_patient} == {"A-0002"}

    today = timezone.localdate()
    assert len(export(carol, world, date_from=today, date_to=today)) >= 3
    assert export(carol, world, date_from=today + dt.timedelta(days=1)) == []
    assert export(carol, world, date_to=today - dt.timedelta(days=1)) == []
    combined = export(carol, world, action="patient.view", actor="alice", patient="A-0001", date_from=today)
    assert [(r["action"], r["actor_email"], r["patient_mrn"]) for r in combined] == [
        ("patient.view", "alice@st-mary.example", "A-0001")
    ]


def test_the_page_filters_the_same_way(carol, world):
    audit.record("patient.view", hospital=world.a, actor=world.bob, obj=world.other_a)
    response = page(carol, world, actor="bob", action="patient.view")
    assert response.status_code == 200
    shown = list(response.context["page"].object_list)
    assert shown and all(e.actor_email == "bob@st-mary.example" and e.action == "patient.view" for e in shown)
    html = response.content.decode()
    assert "actor=bob" in html and "Download as CSV" in html  # the download keeps the filters
    empty = page(carol, world, action="report.sign")  # a real event name, none yet
    assert empty.status_code == 200 and "No events match these filters." in empty.content.decode()


@pytest.mark.parametrize(
    "filters,message",
    [
        ({"date_from": "2026-12-05", "date_to": "2026-12-01"}, "The end date must not be before the start date."),
        ({"date_from": "yesterday"}, "Enter a valid date."),
        ({"patient": "NOBODY-1"}, "No patient of this hospital has this MRN."),
        ({"patient": "B-0001"}, "No patient of this hospital has this MRN."),  # hospital B's Bea
        ({"action": "=cmd|' /C calc'!A0"}, "Choose an event from the list."),
    ],
)
def test_bad_filters_are_a_400_with_the_reason(carol, world, filters, message):
    # Each message is named after its field ("Patient MRN: no patient of this hospital…").
    response = page(carol, world, **filters)
    assert response.status_code == 400 and message.lower() in response.content.decode().lower()
    download = carol.get(reverse("studies:audit_export", args=[world.a.slug]), filters)
    assert download.status_code == 400 and message.lower() in download.content.decode().lower()


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_cells_that_a_spreadsheet_would_run_are_neutralised(start):
    assert neutralise(f"{start}SUM(A1:A9)") == f"'{start}SUM(A1:A9)"
    assert neutralise("Potter = Paul") == "Potter = Paul"


def test_formulas_in_names_reach_the_csv_as_text(carol, world):
    with scopes_disabled():
        evil = PatientFactory(
            hospital=world.a, mrn="=1+1", given_name='=HYPERLINK("http://evil.example","x")', family_name="@SUM"
        )
        world.bob.full_name = "+Bob"
        world.bob.save()
    audit.record("patient.view", hospital=world.a, actor=world.bob, obj=evil, note="-2+3")
    row = next(r for r in export(carol, world, patient="=1+1"))
    assert row["object"].startswith("'") and row["patient_mrn"] == "'=1+1" and row["actor_name"] == "'+Bob"
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values())


def test_exporting_is_audited(carol, world):
    export(carol, world, action="patient.view", actor="alice")
    with scopes_disabled():
        event = AuditEvent.objects.filter(action="audit.export").get()
    assert event.actor == world.carol and event.hospital == world.a
    assert event.detail == {"filters": {"action": "patient.view", "actor": "alice"}}
    assert any(r["action"] == "audit.export" for r in export(carol, world))
