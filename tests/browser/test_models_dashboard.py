"""The models dashboard in a real browser, on the production topology (daphne, PostgreSQL, Redis,
a Celery worker): six weeks of a hospital's reads whose last week sent lung CT instead of brain
MRI, summarised and drift-checked by the worker's scheduled tasks. The hospital admin sees the
alerts and the charts (with their table views, and no axe-core violations), acknowledges an
alert with a note, and it leaves the page; a doctor reads the page without any action."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled

from apps.diagnosis.models import DriftAlert, VersionPerformance
from imagemedix.celery import app
from tests.celery_worker import run_name
from tests.diagnosis.traffic import Traffic, drift_registry, lung_ct_week

from .test_clinical_flow import _login, browser, stack  # noqa: F401 - the shared stack and browser fixtures

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _until(predicate, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


def _axe_violations(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]})
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])})" for v in results.response["violations"]]


def test_admin_reads_the_charts_and_acknowledges_a_drift_alert(stack, browser, redis_url):  # noqa: F811
    base, world = stack["url"], stack["world"]
    today = timezone.now().astimezone(dt.UTC).date()
    traffic = Traffic(
        world, drift_registry(), dt.datetime.combine(today - dt.timedelta(days=42), dt.time(9), tzinfo=dt.UTC)
    )
    for day in range(35):
        traffic.ordinary_day(day)
    lung_ct_week(traffic)

    # What celery beat sends, to the stack's worker.
    saved = app.conf.broker_url, app.conf.task_always_eager, app.conf.task_default_queue
    app.conf.broker_url, app.conf.task_always_eager, app.conf.task_default_queue = redis_url, False, run_name("browser")
    app._pool = None
    app.__dict__.pop("amqp", None)
    try:
        for entry in app.conf.beat_schedule.values():
            if entry["task"] in {"diagnosis.summarize_performance", "diagnosis.check_drift"}:
                app.send_task(entry["task"])
    finally:
        app.conf.broker_url, app.conf.task_always_eager, app.conf.task_default_queue = saved
        app._pool = None
        app.__dict__.pop("amqp", None)

    def ready():
        with scopes_disabled():
            return DriftAlert.objects.filter(hospital=world.a).count() == 2 and VersionPerformance.objects.exists()

    _until(ready, "the worker's performance summary and drift alerts")

    page = browser.new_context().new_page()
    _login(page, base, world.carol.email)
    page.goto(f"{base}/h/st-mary/models/")
    alerts = page.locator(".drift-alerts li")
    assert alerts.count() == 2
    assert "DICOM modality tags" in page.locator(".drift-alerts").inner_text()
    assert page.locator("svg.chart-svg").count() >= 10
    refusal = page.locator("figure.chart", has=page.locator("#drift-router-refusal_rate-caption"))
    refusal.locator("summary").click()  # the table view opens with the keyboard or a click
    assert refusal.locator("table").is_visible()
    assert "yes" in refusal.locator("table").inner_text()
    assert _axe_violations(page) == []

    first = alerts.first
    signal = first.locator("strong").inner_text()
    first.locator("input[name=note]").fill("Radiology confirmed CT uploads by mistake; staff told.")
    first.locator("button[type=submit]").click()
    page.wait_for_load_state("networkidle")
    assert "Alert acknowledged." in page.locator(".messages").inner_text()
    assert page.locator(".drift-alerts li").count() == 1
    assert signal not in page.locator(".drift-alerts").inner_text()
    with scopes_disabled():
        acknowledged = DriftAlert.objects.get(acknowledged_at__isnull=False)
    assert acknowledged.acknowledged_by == world.carol and "CT uploads" in acknowledged.acknowledgement

    doctor = browser.new_context().new_page()
    _login(doctor, base, world.alice.email)
    doctor.goto(f"{base}/h/st-mary/models/")
    assert doctor.locator(".drift-alerts li").count() == 1
    assert doctor.locator(".drift-alerts form").count() == 0
    assert "Read-only" in doctor.locator("main").inner_text()
    assert _axe_violations(doctor) == []
