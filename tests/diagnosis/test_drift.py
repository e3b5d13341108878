"""Drift monitoring proved on synthetic traffic: five weeks of a hospital's ordinary reads raise
no alert; a shifted week raises exactly the alerts of what shifted (lung CT sent instead of
brain MRI; a flipped class mix; a new detector), the hospital admins are notified and e-mailed,
and the alert stays on the dashboard until one of them acknowledges it."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from django.core import mail
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent, Role
from apps.accounts.tenancy import tenant_scope
from apps.chat.models import Notification
from apps.diagnosis import drift
from apps.diagnosis.models import DriftAlert, DriftCheck
from tests.factories import MembershipFactory, UserFactory

from .helpers import CHEST_LABELS
from .traffic import FLIPPED_CHEST_MIX, START, Read, Traffic, confident, drift_registry, lung_ct_week


@pytest.fixture
def versions(db):
    return drift_registry()


def _check(world, day: int) -> set[tuple[str, str]]:
    """Run the daily check for START + day; the (task, signal) pairs over their threshold."""
    with tenant_scope(world.a.pk):
        checks = drift.check_hospital(world.a.pk, (START + dt.timedelta(days=day)).date())
    return {(c.task, c.signal) for c in checks if c.crossed}


@pytest.fixture
def five_ordinary_weeks(world, versions):
    traffic = Traffic(world, versions)
    for day in range(35):
        traffic.ordinary_day(day)
    return traffic


def test_ordinary_weeks_raise_no_alert(world, five_ordinary_weeks, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert _check(world, 7) == set()  # against the cards only: the first weeks are not over
        assert _check(world, 35) == set()  # against the first four weeks too
    with scopes_disabled():
        assert not DriftAlert.objects.exists()
        checks = {(c.task, c.signal): c for c in DriftCheck.objects.filter(day=(START + dt.timedelta(days=35)).date())}
    assert len(checks) == 12  # 4 input signals, 4 per specialist
    assert all(c.value is not None for c in checks.values()), {
        k: c.details for k, c in checks.items() if c.value is None
    }
    assert checks[("router", "image_size")].reference.startswith("the first 28 days of use")
    assert checks[("chest", "class_mix")].value < 0.05
    assert not mail.outbox


def test_lung_ct_instead_of_brain_mri_raises_the_input_alerts(
    world, five_ordinary_weeks, django_capture_on_commit_callbacks
):
    lung_ct_week(five_ordinary_weeks)

    with django_capture_on_commit_callbacks(execute=True):
        crossed = _check(world, 42)

    assert crossed == {("router", "refusal_rate"), ("router", "modality_tags")}
    with scopes_disabled():
        alerts = list(DriftAlert.objects.filter(hospital=world.a).order_by("signal"))
        assert [a.signal for a in alerts] == ["modality_tags", "refusal_rate"]
        notes = Notification.objects.filter(user=world.carol, kind="drift_alert")
        assert notes.count() == 2 and not Notification.objects.filter(kind="drift_alert").exclude(user=world.carol)
        assert AuditEvent.objects.filter(action="model.drift_alert", hospital=world.a).count() == 2
    assert sorted(m.to for m in mail.outbox) == [["carol@st-mary.example"]] * 2
    assert "DICOM modality tags" in " ".join(m.subject + m.body for m in mail.outbox).replace("dicom", "DICOM")

    # The next day, still shifted: no second alert for the same signals.
    with django_capture_on_commit_callbacks(execute=True):
        assert _check(world, 43) == crossed
    with scopes_disabled():
        assert DriftAlert.objects.count() == 2
    assert len(mail.outbox) == 2


def test_a_flipped_class_mix_raises_the_class_mix_alert(world, five_ordinary_weeks):
    traffic = five_ordinary_weeks
    flipped = itertools.cycle(FLIPPED_CHEST_MIX)
    for day in range(35, 42):
        traffic.write(day, traffic.chest(labels=flipped), traffic.brain(), [])
    assert _check(world, 42) == {("chest", "class_mix")}


def test_a_new_detector_raises_the_image_and_model_alerts(world, five_ordinary_weeks):
    traffic = five_ordinary_weeks
    low = itertools.cycle([0.5, 0.55, 0.6, 0.45, 0.52])
    for day in range(35, 42):  # 16-bit PNGs of 3000 px, read with low confidence; one in five unlike training
        chest = []
        for i, read in enumerate(traffic.chest(width=3000, height=2500, bit_depth=16)):
            if i % 5 == 0:
                read = Read(refused=True, refusal_code="unlike_training", width=3000, height=2500, bit_depth=16,
                            ood={"score": 2.5, "threshold": 1.2})  # fmt: skip
            else:
                read.probabilities = confident(CHEST_LABELS, read.label, next(low))
                if read.doctor_label is not None and i % 2:
                    read.doctor_label = next(x for x in CHEST_LABELS if x != read.label)
            chest.append(read)
        traffic.write(day, chest, traffic.brain(), [])
    assert _check(world, 42) == {
        ("router", "image_size"),
        ("router", "bit_depth"),
        ("chest", "confidence"),
        ("chest", "ood_rate"),
        ("chest", "disagreement"),
    }


def test_an_alert_stays_on_the_dashboard_until_an_admin_acknowledges_it(world, client, five_ordinary_weeks):
    traffic = five_ordinary_weeks
    flipped = itertools.cycle(FLIPPED_CHEST_MIX)
    for day in range(35, 42):
        traffic.write(day, traffic.chest(labels=flipped), traffic.brain(), [])
    _check(world, 42)
    with scopes_disabled():
        alert = DriftAlert.objects.get()
    dashboard = reverse("diagnosis:models", args=["st-mary"])
    acknowledge = reverse("diagnosis:acknowledge_alert", args=["st-mary", alert.pk])

    client.force_login(world.alice)  # doctors see it, cannot acknowledge it
    page = client.get(dashboard).content.decode()
    assert f'id="alert-{alert.pk}"' in page and acknowledge not in page
    assert client.post(acknowledge, {"note": "x"}).status_code == 403

    client.force_login(world.carol)
    page = client.get(dashboard).content.decode()
    assert f'id="alert-{alert.pk}"' in page and acknowledge in page
    response = client.post(acknowledge, {"note": "New referral clinic sends mostly viral cases; expected."})
    assert response.status_code == 302
    page = client.get(dashboard).content.decode()
    assert f'id="alert-{alert.pk}"' not in page
    with scopes_disabled():
        alert.refresh_from_db()
        event = AuditEvent.objects.get(action="model.drift_acknowledge")
    assert alert.acknowledged_by == world.carol and "referral clinic" in alert.acknowledgement
    assert event.actor == world.carol and event.object_id == str(alert.pk)

    # Acknowledged, still shifted: no new alert until the signal has come back under its threshold.
    _check(world, 43)
    with scopes_disabled():
        assert DriftAlert.objects.count() == 1


def test_alerts_go_to_the_hospitals_active_admins_only(world):
    with scopes_disabled():
        left = MembershipFactory(user=UserFactory(), hospital=world.a, role=Role.HOSPITAL_ADMIN, is_active=False)
        off = MembershipFactory(user=UserFactory(is_active=False), hospital=world.a, role=Role.HOSPITAL_ADMIN)
        assert left.user != off.user
        assert drift.hospital_admins(world.a.pk) == [world.carol]
