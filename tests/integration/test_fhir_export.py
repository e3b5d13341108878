"""Signed reports are POSTed to the hospital's FHIR server through Celery, with retries, audited.

The FHIR server is a stand-in (a small HTTP server in the test) that records what it is sent and
answers with the status codes the test chooses; the task runs inline (eager Celery)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django_scopes import scopes_disabled
from fhir.resources.bundle import Bundle

from apps.accounts.models import AuditEvent
from apps.integration.tasks import export_report_fhir
from apps.reports import services as report_services
from tests.factories import make_study
from tests.reports.helpers import make_diagnosis, write_report

pytestmark = pytest.mark.django_db


class StandInFhirServer:
    """Records each POST (headers and JSON body) and answers from ``statuses`` (then 200)."""

    def __init__(self, statuses: list[int]):
        self.statuses = list(statuses)
        self.received: list[tuple[dict[str, str], dict]] = []
        #: Headers of each GET: what a client that follows a redirect sends (it never should).
        self.followed: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                server.received.append((dict(self.headers), json.loads(body)))
                status = server.statuses.pop(0) if server.statuses else 200
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Type", "application/fhir+json")
                self.end_headers()
                self.wfile.write(b'{"resourceType": "Bundle", "type": "transaction-response"}')

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.followed.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/fhir"

    def __enter__(self) -> StandInFhirServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fhir_server(settings, eager_celery) -> Iterator:
    def start(statuses: list[int] = ()) -> StandInFhirServer:
        server = StandInFhirServer(list(statuses))
        settings.FHIR_ENDPOINTS = {"st-mary": {"url": server.url, "authorization": "Bearer ehr-secret"}}
        settings.FHIR_EXPORT_RETRY_SECONDS = 0
        settings.FHIR_EXPORT_MAX_RETRIES = 3
        return server

    return start


def _signed(world, *, render_pdf: bool = False):
    with scopes_disabled():
        study = make_study(world.paul_record, world.alice)
    make_diagnosis(study)
    report = write_report(study, world.alice, sign=True)
    if render_pdf:
        with scopes_disabled():
            report = report_services.render_report_pdf_now(report.pk)
    return report


def test_the_export_waits_for_the_pdf(world, fhir_server):
    report = _signed(world)  # its PDF is still pending: every try waits, the last one sends without it
    with fhir_server() as server:
        export_report_fhir.apply(kwargs={"hospital_id": world.a.pk, "report_id": report.pk})
    assert len(server.received) == 1
    resource = next(
        e["resource"] for e in server.received[0][1]["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
    )
    assert "presentedForm" not in resource


def test_signing_sends_the_report_and_its_amendment_to_the_fhir_server(
    world, fhir_server, django_capture_on_commit_callbacks
):
    with fhir_server() as server:
        with django_capture_on_commit_callbacks(execute=True):  # the PDF, then the export
            report = _signed(world)
        assert len(server.received) == 1
        headers, bundle = server.received[0]
        assert headers["Authorization"] == "Bearer ehr-secret"
        assert headers["Content-Type"] == "application/fhir+json"
        Bundle.parse_obj(bundle)
        assert bundle["type"] == "transaction"
        entries = {e["resource"]["resourceType"]: e for e in bundle["entry"]}
        assert entries["DiagnosticReport"]["resource"]["status"] == "final"
        assert entries["DiagnosticReport"]["resource"]["presentedForm"][0]["contentType"] == "application/pdf"
        assert entries["DiagnosticReport"]["request"] == {
            "method": "PUT",
            "url": f"DiagnosticReport?identifier=urn:imagemedix:st-mary:report|{report.pk}",
        }

        with django_capture_on_commit_callbacks(execute=True), scopes_disabled():
            amendment = report_services.amend_report(report, world.alice, reason="The label was revised.")
            report_services.save_draft(
                amendment, world.alice, findings="", impression="Revised.", final_label="bacterial_pneumonia"
            )
            report_services.sign_report(amendment, world.alice)
        _, second = server.received[1]
        resource = next(e for e in second["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
        assert resource["resource"]["status"] == "amended"
        assert resource["request"]["url"] == entries["DiagnosticReport"]["request"]["url"]  # same report, updated
    with scopes_disabled():
        sent = AuditEvent.objects.filter(action="report.fhir_export", hospital=world.a)
        assert sorted(e.detail["version"] for e in sent) == [1, 2]
        assert all("ehr-secret" not in json.dumps(e.detail) for e in sent)


def test_a_refusing_server_is_retried_then_takes_the_report(world, fhir_server):
    report = _signed(world, render_pdf=True)
    with fhir_server([503, 500]) as server:
        export_report_fhir.apply(kwargs={"hospital_id": world.a.pk, "report_id": report.pk})
    assert len(server.received) == 3
    with scopes_disabled():
        errors = AuditEvent.objects.filter(action="report.fhir_export_error").order_by("id")
        assert [(e.detail["attempt"], e.detail["status"]) for e in errors] == [(1, 503), (2, 500)]
        assert AuditEvent.objects.get(action="report.fhir_export").detail["attempt"] == 3


@pytest.mark.parametrize("redirect", [301, 302, 303, 307])
def test_a_redirect_is_not_followed_and_not_taken_for_success(world, fhir_server, redirect):
    """Following it would turn the POST into a GET (a 200 that stored nothing) and carry the
    endpoint's Authorization to wherever the redirect points."""
    report = _signed(world, render_pdf=True)
    with fhir_server([redirect]) as server:
        export_report_fhir.apply(kwargs={"hospital_id": world.a.pk, "report_id": report.pk})
    assert server.followed == []
    assert len(server.received) == 2  # the redirect, then the retry that is taken
    with scopes_disabled():
        [error] = AuditEvent.objects.filter(action="report.fhir_export_error")
        assert error.detail["status"] == redirect
        assert AuditEvent.objects.get(action="report.fhir_export").detail["attempt"] == 2


def test_a_server_that_never_takes_it_ends_in_an_audited_failure(world, fhir_server):
    report = _signed(world, render_pdf=True)
    with fhir_server([500] * 10) as server:
        export_report_fhir.apply(kwargs={"hospital_id": world.a.pk, "report_id": report.pk})
    assert len(server.received) == 4  # the first try and 3 retries
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="report.fhir_export_failed", hospital=world.a).count() == 1
        assert not AuditEvent.objects.filter(action="report.fhir_export").exists()


def test_an_unreachable_server_is_retried_and_audited(world, settings, eager_celery):
    settings.FHIR_ENDPOINTS = {"st-mary": {"url": "http://127.0.0.1:9/fhir"}}  # discard port: refused
    settings.FHIR_EXPORT_RETRY_SECONDS = 0
    settings.FHIR_EXPORT_MAX_RETRIES = 1
    report = _signed(world, render_pdf=True)
    export_report_fhir.apply(kwargs={"hospital_id": world.a.pk, "report_id": report.pk})
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="report.fhir_export_error").count() == 2
        assert AuditEvent.objects.filter(action="report.fhir_export_failed").count() == 1


def test_hospitals_without_a_fhir_server_send_nothing(
    world, settings, eager_celery, django_capture_on_commit_callbacks
):
    settings.FHIR_ENDPOINTS = {"riverside": {"url": "http://127.0.0.1:9/fhir"}}
    with django_capture_on_commit_callbacks(execute=True):
        _signed(world)
    with scopes_disabled():
        assert not AuditEvent.objects.filter(action__startswith="report.fhir_export").exists()
