"""The models dashboard's charts: drawn on the server as SVG from the summary tables, each with
a table view, no script and no inline style; the page's query count does not grow with the data."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.tenancy import tenant_scope
from apps.diagnosis import charts, drift, performance
from apps.diagnosis.models import DriftCheck

from .traffic import START, Traffic, drift_registry, lung_ct_week


@pytest.fixture
def busy_hospital(world):
    """Six weeks of reads (the last one with lung CT instead of brain MRI), summarised, and a
    week of daily drift checks."""
    traffic = Traffic(world, drift_registry())
    for day in range(35):
        traffic.ordinary_day(day)
    lung_ct_week(traffic)
    performance.summarize_hospital(world.a.pk)
    with tenant_scope(world.a.pk):
        for day in range(36, 43):
            drift.check_hospital(world.a.pk, (START + dt.timedelta(days=day)).date())
    return traffic


@pytest.fixture(autouse=True)
def _the_day_after(monkeypatch):
    """The dashboard shows the last 30 days of drift: make "today" the day after the traffic."""
    monkeypatch.setattr("apps.diagnosis.dashboard.timezone.now", lambda: START + dt.timedelta(days=43))


def test_the_dashboard_draws_every_chart_with_its_table(world, client, busy_hospital):
    client.force_login(world.carol)
    html = client.get(reverse("diagnosis:models", args=["st-mary"])).content.decode()

    svgs = re.findall(r"<svg class=\"chart-svg\".*?</svg>", html, re.S)
    # chest and brain: agreement, confusion, calibration; 4 drift charts per task (12)
    assert len(svgs) == 3 + 3 + 12
    assert html.count("<summary>Table view") == len(svgs)
    assert all('role="img"' in svg and "<title" in svg and "<desc" in svg for svg in svgs)
    assert "<script>" not in html and " style=" not in html  # CSP: no inline script or style
    # The lung-CT week: the refusal-rate chart marks the days over the threshold, and its table says so.
    refusal = re.search(
        r'<figure class="chart">\s*<figcaption id="drift-router-refusal_rate-caption">.*?</figure>', html, re.S
    )
    assert refusal and "chart-point-alert" in refusal.group(0) and "<td>yes</td>" in refusal.group(0)
    assert "threshold 0.1" in refusal.group(0)
    # The confusion heat-map lists the doctors' corrections in its table.
    assert re.search(r"AI label against the doctor&#x27;s label: c1", html)


def test_the_page_queries_do_not_grow_with_the_data(world, client, busy_hospital):
    client.force_login(world.carol)
    url = reverse("diagnosis:models", args=["st-mary"])
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    assert len(queries) <= 20, [q["sql"][:120] for q in queries]


def test_a_drift_chart_leaves_gaps_for_days_without_enough_data(world):
    with scopes_disabled():
        days = [dt.date(2026, 10, d) for d in (1, 2, 3, 4)]
        values = [0.1, None, 0.3, 0.5]
        checks = [
            DriftCheck(hospital=world.a, task="router", signal="image_size", day=day, value=v, threshold=0.25,
                       n=40, crossed=v is not None and v >= 0.25,
                       details={} if v is not None else {"reason": "too few reads"})
            for day, v in zip(days, values, strict=True)
        ]  # fmt: skip
    chart = charts.drift_signal("Router", "image_size", checks)
    assert chart.line.count("M ") == 2  # two runs of points: before and after the gap
    assert [p.flagged for p in chart.points] == [False, True, True]
    assert chart.table_rows[1][1] == "— (too few reads)"
    # values map onto the y axis (0.5 is the top, twice the threshold)
    assert chart.points[2].y == pytest.approx(charts.TOP)
    assert chart.reference_line[1] == pytest.approx((charts.HEIGHT - charts.BOTTOM + charts.TOP) / 2)
