"""The result partial, the overlay download and the status JSON (access itself is covered by
the tenancy matrix, tests/routes/diagnosis.py)."""

from __future__ import annotations

import json
import re

from django.template.loader import render_to_string
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.diagnosis.models import Diagnosis
from apps.diagnosis.services import latest_diagnosis
from tests.factories import make_study

from .helpers import make_diagnosis


def _url(name, study):
    return reverse(f"diagnosis:{name}", kwargs={"hospital_slug": "st-mary", "study_pk": study.pk})


def test_partial_shows_every_class_with_bars_versions_and_the_notice(world):
    study = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        make_diagnosis(study, label="bacterial_pneumonia")
        diagnosis = latest_diagnosis(study)
        html = render_to_string("diagnosis/_result.html", {"study": study, "diagnosis": diagnosis, "hospital": world.a})
    assert "assistive, not a diagnosis" in html
    assert "Bacterial pneumonia" in html and "Viral pneumonia" in html and "Normal" in html
    bars = re.findall(r'<meter class="prob-bar[^"]*" min="0" max="1" value="([\d.]+)"', html)
    assert sorted(bars) == ["0.100", "0.100", "0.800"]
    assert "style=" not in html  # a strict CSP (no inline styles) draws the bars
    assert "80.0%" in html and "10.0%" in html
    # The heatmap is the viewer's layer (templates/studies/_viewer.html), not a second picture.
    assert "a layer of the image viewer" in html and _url("overlay", study) not in html
    assert "test-fixture" in html  # model versions
    assert "specialist 9 ms" in html


def test_partial_shows_the_blended_overlay_of_a_read_stored_before_the_heatmap_layer(world):
    study = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        Diagnosis.objects.filter(pk=make_diagnosis(study).pk).update(heatmap_name="", heatmap_sha256="")
        html = render_to_string(
            "diagnosis/_result.html", {"study": study, "diagnosis": latest_diagnosis(study), "hospital": world.a}
        )
    assert _url("overlay", study) in html and "a layer of the image viewer" not in html


def test_partial_shows_a_refusal_plainly(world):
    study = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        make_diagnosis(study, refused=True)
        html = render_to_string(
            "diagnosis/_result.html", {"study": study, "diagnosis": latest_diagnosis(study), "hospital": world.a}
        )
    assert "The AI did not read this image" in html
    assert "it looks like a photograph" in html
    assert "prob-bar" not in html and "overlay.png" not in html


def test_study_page_includes_the_result(world, client):
    study = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        make_diagnosis(study)
    client.force_login(world.alice)
    response = client.get(reverse("studies:study_detail", kwargs={"hospital_slug": "st-mary", "pk": study.pk}))
    assert response.status_code == 200
    assert b"prob-bar" in response.content and b"Bacterial pneumonia" in response.content


def test_overlay_download_is_audited(world, client):
    study = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        diagnosis = make_diagnosis(study)
    client.force_login(world.alice)
    response = client.get(_url("overlay", study))
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert response["Cache-Control"] == "private, no-store"
    with scopes_disabled():
        event = AuditEvent.objects.get(action="diagnosis.view_overlay")
    assert event.actor == world.alice and event.object_id == str(diagnosis.pk) and event.hospital == world.a


def test_overlay_of_a_study_without_a_read_is_404(world, client):
    study = make_study(world.paul_record, world.alice)
    client.force_login(world.alice)
    assert client.get(_url("overlay", study)).status_code == 404


def test_status_json_for_a_reconnecting_page(world, client):
    study = make_study(world.paul_record, world.alice)
    client.force_login(world.carol)
    payload = json.loads(client.get(_url("study_status", study)).content)
    assert payload["status"] == "queued" and payload["diagnosis"] is None and payload["finished"] is False
    with scopes_disabled():
        make_diagnosis(study)
    payload = json.loads(client.get(_url("study_status", study)).content)
    assert payload["diagnosis"]["label"] == "bacterial_pneumonia"
    assert payload["diagnosis"]["probabilities"]["bacterial_pneumonia"] == 0.8
    assert payload["diagnosis"]["models"]["router"]["version"] == "test-fixture"
    assert payload["diagnosis"]["models"]["chest"]["sha256"]
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="study.view_status", actor=world.carol).count() == 2
