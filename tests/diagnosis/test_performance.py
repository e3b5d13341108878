"""Per-version performance from feedback: the statistics, the weekly summary rows the scheduled
task writes, and the figures the dashboard derives from them."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from django.utils import timezone
from django_scopes import scopes_disabled
from scipy import stats as scipy_stats

from apps.accounts.tenancy import tenant_scope
from apps.diagnosis import performance
from apps.diagnosis.models import ModelVersion, VersionPerformance
from apps.diagnosis.stats import (
    chi_square_p,
    histogram,
    histogram_quantile,
    population_stability_index,
    total_variation,
    wilson_interval,
)

from .helpers import CHEST_LABELS, fake_version
from .traffic import Read, confident, write_reads

# --- statistics ---------------------------------------------------------------------------


def test_wilson_interval_matches_the_published_values():
    # Newcombe (1998), Table I: 81/263 → 0.2553–0.3662; 15/148 → 0.0624–0.1605; 0/20 → 0–0.1611.
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_distribution_distances():
    assert total_variation({"a": 1, "b": 1}, {"a": 1, "b": 1}) == 0
    assert total_variation({"a": 10}, {"b": 3}) == 1
    assert total_variation({"a": 0.7, "b": 0.3}, {"a": 0.4, "b": 0.6}) == pytest.approx(0.3)
    # chi-square agrees with SciPy's own test on the same counts
    p = chi_square_p({"a": 30, "b": 70}, {"a": 0.5, "b": 0.5})
    assert p == pytest.approx(scipy_stats.chisquare([30, 70]).pvalue)
    assert chi_square_p({"a": 3}, {"a": 1.0}) is None
    assert population_stability_index([10, 20, 70], [10, 20, 70]) == pytest.approx(0)
    shifted = population_stability_index([70, 20, 10], [10, 20, 70])
    assert shifted == pytest.approx(2 * 0.6 * math.log(7))
    assert histogram([0, 49, 50, 99, 5000, 1e9], [0, 50, 100, math.inf]) == [2, 2, 2]
    assert histogram_quantile([10, 10], [0, 100, 200], 0.5) == pytest.approx(100)
    assert histogram_quantile([0, 4], [0, 100, math.inf], 0.9) == 100
    assert histogram_quantile([0, 0], [0, 1, 2], 0.5) is None


# --- the summary ----------------------------------------------------------------------------


@pytest.fixture
def versions(db):
    with scopes_disabled():
        ModelVersion.objects.all().delete()  # the shipped versions registered by migrate
        return {
            "router": fake_version("router", "r1", is_active=True),
            "chest": fake_version("chest", "c1", is_active=True),
            "chest2": fake_version("chest", "c2"),
        }


def _monday(weeks_ago: int) -> dt.datetime:
    today = timezone.now().astimezone(dt.UTC).date()
    monday = today - dt.timedelta(days=today.weekday() + 7 * weeks_ago)
    return dt.datetime.combine(monday, dt.time(10), tzinfo=dt.UTC)


def _rows(hospital) -> dict[tuple[str, dt.date], VersionPerformance]:
    with scopes_disabled():
        return {
            (r.model_version.version, r.week): r
            for r in VersionPerformance.objects.filter(hospital=hospital).select_related("model_version")
        }


def test_weekly_rows_count_reads_reviews_agreement_confusion_and_latency(world, versions):
    last_week, this_week = _monday(1), _monday(0)
    p = lambda label: confident(CHEST_LABELS, label, 0.85)  # noqa: E731
    reads = [
        Read(label="normal", probabilities=p("normal"), doctor_label="normal", total_ms=80),
        Read(label="normal", probabilities=p("normal"), doctor_label="viral_pneumonia", total_ms=150),
        Read(label="bacterial_pneumonia", probabilities=p("bacterial_pneumonia"), total_ms=300),
        Read(label="viral_pneumonia", indeterminate=True, doctor_label="bacterial_pneumonia", total_ms=90),
        Read(refused=True, refusal_code="unlike_training", route="chest_xray", total_ms=70),
        Read(refused=True, refusal_code="other_modality", route="unsupported", total_ms=40),
    ]
    write_reads(
        world.paul_record, world.alice, reads, when=last_week, router=versions["router"], specialist=versions["chest"]
    )
    write_reads(
        world.paul_record,
        world.alice,
        [Read(label="normal", probabilities=p("normal"), doctor_label="normal")],
        when=this_week,
        router=versions["router"],
        specialist=versions["chest"],
    )
    # Another hospital's reads never enter hospital A's rows.
    write_reads(
        world.bea_record, world.dora, [Read(doctor_label="viral_pneumonia")] * 3,
        when=last_week, router=versions["router"], specialist=versions["chest"],
    )  # fmt: skip

    weeks = performance.summarize_hospital(world.a.pk)

    assert weeks == [last_week.date(), this_week.date()]
    rows = _rows(world.a)
    chest = rows[("c1", last_week.date())]
    assert (chest.reads, chest.refused, chest.indeterminate) == (5, 1, 1)
    assert (chest.reviewed, chest.reviewed_determinate, chest.agreed) == (3, 2, 1)
    assert chest.confusion == {
        "normal": {"normal": 1, "viral_pneumonia": 1},
        "indeterminate": {"bacterial_pneumonia": 1},
    }
    assert chest.calibration[8] == [2, pytest.approx(1.7), 1]  # two reads at 85%, one kept
    assert sum(chest.latency_histogram) == 5
    router = rows[("r1", last_week.date())]
    assert (router.reads, router.refused, router.reviewed) == (6, 1, 0)
    assert rows[("c1", this_week.date())].agreed == 1
    assert all(r.hospital_id == world.a.pk for r in rows.values())

    with tenant_scope(world.a.pk):
        summaries = {s.model_version.version: s for s in performance.version_summaries(world.a.pk)}
    total = summaries["c1"]
    assert (total.reads, total.reviewed_determinate, total.agreed) == (6, 3, 2)
    assert total.agreement.value == pytest.approx(2 / 3)
    assert (total.agreement.low, total.agreement.high) == pytest.approx(wilson_interval(2, 3))
    assert total.reviewed_share.n == 5  # refusals cannot be reviewed
    assert total.refusal_rate.value == pytest.approx(1 / 6)
    assert 50 <= total.latency_p50 <= 200


def test_a_second_run_recomputes_only_the_weeks_that_changed(world, versions):
    old, recent = _monday(3), _monday(1)
    [old_read] = write_reads(
        world.paul_record, world.alice, [Read()], when=old, router=versions["router"], specialist=versions["chest"]
    )
    write_reads(
        world.paul_record, world.alice, [Read()], when=recent, router=versions["router"], specialist=versions["chest"]
    )
    assert performance.summarize_hospital(world.a.pk) == [old.date(), recent.date()]
    assert performance.summarize_hospital(world.a.pk) == []  # nothing new

    # A doctor reviews the old read now: only its week is recomputed, and now counts it.
    from apps.diagnosis.services import correct_diagnosis

    with scopes_disabled():
        old_read.refresh_from_db()
        correct_diagnosis(old_read, world.alice, "viral_pneumonia")
    assert performance.summarize_hospital(world.a.pk) == [old.date()]
    row = _rows(world.a)[("c1", old.date())]
    assert (row.reviewed, row.agreed, row.confusion) == (1, 0, {"normal": {"viral_pneumonia": 1}})


def test_the_beat_schedule_runs_the_summary_task():
    from apps.diagnosis import tasks  # noqa: F401 - registers the tasks, as the worker's autodiscovery does
    from imagemedix.celery import app

    entries = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert "diagnosis.summarize_performance" in entries
    assert "diagnosis.summarize_performance" in app.tasks
