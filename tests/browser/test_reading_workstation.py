"""The doctor's reading workstation in real Chromium against daphne (the ``web`` fixture: tasks
inline, no worker needed; the AI reads are stored rows, tests/reports/helpers.py):

* the viewer: wheel zoom, drag pan, window/level by drag and by the DICOM's own preset, invert,
  fit, a length in mm from the DICOM pixel spacing, the heatmap layer blended on the canvas;
* the prior beside the study, zoom and pan linked (and unlinked), its AI result and report;
* the worklist filtered by reporting state;
* errors where the eye is: a failed signature focuses the error summary, whose link focuses the field;
* entered in error: marked with a reason, gone from the worklist and from the patient's view.

Screenshots of the review screen at 1366×900 and 390×844 are written to docs/screenshots/ when
``UPDATE_SCREENSHOTS=1`` (else to the test's temporary folder; either way the page must not
scroll sideways).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from django_scopes import scopes_disabled
from PIL import Image

from apps.reports import services as report_services
from apps.studies.models import Study, StudyStatus
from tests.factories import dicom_bytes, make_study

from ..reports.helpers import make_diagnosis, write_report
from .test_accessibility import VIEWPORTS, _axe
from .test_clinical_flow import CHEST_XRAY, ROOT, _login, browser  # noqa: F401 - the browser fixture
from .test_second_factor import web  # noqa: F401 - daphne alone on the test database

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SCREENSHOTS = ROOT / "docs" / "screenshots"


def _chest_dicom() -> bytes:
    """The fixture chest X-ray as a 12-bit DX DICOM with two windows and 0.2 mm pixels."""
    pixels = (np.asarray(Image.open(CHEST_XRAY).convert("L"), dtype=np.uint16) * 16).astype("<u2")
    return dicom_bytes(
        rows=pixels.shape[0],
        cols=pixels.shape[1],
        pixel_bytes=pixels.tobytes(),
        modality="DX",
        WindowCenter=[2040, 1200],
        WindowWidth=[4080, 1600],
        WindowCenterWidthExplanation=["Full", "Lung detail"],
        ImagerPixelSpacing=[0.2, 0.2],
    )


@pytest.fixture
def reading(web, world):  # noqa: F811
    """Paul's prior chest X-ray (read, reported, signed) and today's, a DICOM read by the AI."""
    prior = make_study(world.paul_record, world.alice, CHEST_XRAY.read_bytes(), "prior.jpg")
    make_diagnosis(prior)
    prior_report = write_report(prior, world.alice, impression="No acute disease.", sign=True)
    current = make_study(world.paul_record, world.alice, _chest_dicom(), "today.dcm")
    make_diagnosis(current)
    with scopes_disabled():
        Study.objects.filter(pk__in=[prior.pk, current.pk]).update(modality="chest_xray", status=StudyStatus.DONE)
    return {"base": web, "prior": prior, "current": current, "prior_report": prior_report}


def _state(viewer) -> dict[str, str]:
    return {
        k: viewer.get_attribute(f"data-{k}")
        for k in ("scale", "pan-x", "pan-y", "window-center", "window-width", "invert", "heatmap", "measurements")
    }


def _pixel(page, viewer_id: str, x: float = 0.5, y: float = 0.5) -> list[int]:
    """The RGB of the viewer's canvas at (x, y), as fractions of its size, once the pending redraw
    (the viewer draws on the next animation frame) has happened."""
    return page.evaluate(
        """async ([id, x, y]) => {
             await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
             const c = document.querySelector('#' + id + ' canvas');
             const d = c.getContext('2d').getImageData(Math.floor(c.width * x), Math.floor(c.height * y), 1, 1).data;
             return [d[0], d[1], d[2]]; }""",
        [viewer_id, x, y],
    )


def test_viewer_zooms_pans_windows_measures_and_shows_the_heatmap(reading, browser, world):  # noqa: F811
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, reading["base"], world.alice.email)
    page.goto(f"{reading['base']}/h/st-mary/studies/{reading['current'].pk}/review/")
    page.wait_for_selector("#viewer-review[data-ready=true][data-heatmap-ready=true]")
    viewer = page.locator("#viewer-review")
    start = _state(viewer)
    # The file's own first window is the initial one, and its windows are the first presets.
    assert (start["window-center"], start["window-width"]) == ("2040", "4080")
    assert page.locator("#viewer-review-preset option").first.inner_text().startswith("Full (W 4080 / L 2040)")

    box = page.locator("#viewer-review canvas").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2

    page.mouse.move(cx, cy)
    page.mouse.wheel(0, -400)
    zoomed = _state(viewer)
    assert float(zoomed["scale"]) > float(start["scale"]) * 1.5

    page.mouse.down()
    page.mouse.move(cx + 120, cy + 60, steps=6)
    page.mouse.up()
    panned = _state(viewer)
    assert float(panned["pan-x"]) == pytest.approx(float(zoomed["pan-x"]) + 120, abs=2)
    assert float(panned["pan-y"]) == pytest.approx(float(zoomed["pan-y"]) + 60, abs=2)

    # Window/level by drag: right widens the window, down raises the level; the pixels change.
    before = _pixel(page, "viewer-review")
    page.click("#viewer-review [data-tool-button=window]")
    page.mouse.move(cx, cy)
    page.mouse.down()
    page.mouse.move(cx - 150, cy + 100, steps=6)
    page.mouse.up()
    windowed = _state(viewer)
    assert float(windowed["window-width"]) < 4080 and float(windowed["window-center"]) > 2040
    assert _pixel(page, "viewer-review") != before
    # A preset puts the DICOM's second window back exactly.
    page.select_option("#viewer-review-preset", "1")
    assert (viewer.get_attribute("data-window-center"), viewer.get_attribute("data-window-width")) == ("1200", "1600")

    # Keyboard: invert, then fit.
    page.locator("#viewer-review .viewer-stage").focus()
    grey = _pixel(page, "viewer-review")
    page.keyboard.press("i")
    assert viewer.get_attribute("data-invert") == "true"
    assert _pixel(page, "viewer-review") == pytest.approx([255 - v for v in grey], abs=1)
    page.keyboard.press("0")
    assert viewer.get_attribute("data-scale") == start["scale"]

    # A length in mm from the pixel spacing (0.2 mm): 100 image pixels across is 20 mm.
    page.keyboard.press("m")
    scale = float(viewer.get_attribute("data-scale"))
    box = page.locator("#viewer-review canvas").bounding_box()
    x0, y = box["x"] + box["width"] / 2 - 50 * scale, box["y"] + box["height"] / 2
    page.mouse.move(x0, y)
    page.mouse.down()
    page.mouse.move(x0 + 100 * scale, y, steps=5)
    page.mouse.up()
    [length] = json.loads(viewer.get_attribute("data-measurements"))
    assert length["unit"] == "mm" and length["length"] == pytest.approx(20.0, abs=0.3)
    page.keyboard.press("Delete")
    assert viewer.get_attribute("data-measurements") == "[]"

    # The heatmap layer: off at first (read the image first), then blended in colour on the canvas.
    assert viewer.get_attribute("data-heatmap") == "off"
    plain = [_pixel(page, "viewer-review", x, 0.5) for x in (0.3, 0.4, 0.5, 0.6, 0.7)]
    assert all(r == g == b for r, g, b in plain)  # greyscale
    page.check("#viewer-review-heatmap")
    assert viewer.get_attribute("data-heatmap") == "on"
    tinted = [_pixel(page, "viewer-review", x, 0.5) for x in (0.3, 0.4, 0.5, 0.6, 0.7)]
    assert any(len({r, g, b}) > 1 for r, g, b in tinted)
    page.locator("#viewer-review-opacity").fill("0")
    assert [_pixel(page, "viewer-review", x, 0.5) for x in (0.3, 0.4, 0.5, 0.6, 0.7)] == plain
    assert not errors, errors


def test_the_prior_is_beside_the_study_with_linked_zoom_and_pan(reading, browser, world):  # noqa: F811
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    _login(page, reading["base"], world.alice.email)
    page.goto(f"{reading['base']}/h/st-mary/studies/{reading['current'].pk}/review/")
    page.wait_for_selector("#viewer-review[data-ready=true]")
    page.wait_for_selector("#viewer-prior[data-ready=true]")
    current, prior = page.locator("#viewer-review"), page.locator("#viewer-prior")
    assert reading["prior"].created_at.strftime("%-d %b %Y") in page.locator("#prior-heading").inner_text()

    page.click("#viewer-review [data-action=zoom-in]")
    page.click("#viewer-review [data-action=zoom-in]")
    box = page.locator("#viewer-review canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 40, box["y"] + box["height"] / 2 + 30, steps=4)
    page.mouse.up()
    # Linked: the prior follows, at the same zoom relative to its own fit and the same image point
    # in the middle (the two images differ in size).
    assert float(current.get_attribute("data-zoom")) == pytest.approx(1.25**2)
    for attribute in ("data-zoom", "data-center-x", "data-center-y"):
        assert prior.get_attribute(attribute) == current.get_attribute(attribute), attribute
    page.uncheck("#link-views")
    before = prior.get_attribute("data-zoom")
    page.click("#viewer-review [data-action=zoom-in]")
    assert prior.get_attribute("data-zoom") == before != current.get_attribute("data-zoom")  # unlinked

    # The prior's AI result and signed report, one click away.
    page.click("#prior-details summary")
    details = page.locator("#prior-details").inner_text()
    assert "Viral pneumonia (70%)" in details and "No acute disease." in details
    assert page.locator("#prior-details a:has-text('Open the prior’s report')").get_attribute("href") == (
        f"/h/st-mary/reports/{reading['prior_report'].pk}/"
    )


def test_the_worklist_filters_by_reporting_state(reading, browser, world):  # noqa: F811
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    _login(page, reading["base"], world.alice.email)
    page.goto(f"{reading['base']}/h/st-mary/worklist/")
    rows = page.locator("tr[data-study]")
    assert rows.count() == 2
    page.click("a[data-state=signed]")
    page.wait_for_load_state("networkidle")
    assert [rows.nth(i).get_attribute("data-study") for i in range(rows.count())] == [str(reading["prior"].pk)]
    assert page.locator("a[data-state=signed]").get_attribute("aria-current") == "page"
    page.click("a[data-state=needs_report]")
    page.wait_for_load_state("networkidle")
    assert [rows.nth(i).get_attribute("data-study") for i in range(rows.count())] == [str(reading["current"].pk)]
    assert page.locator("[data-count=needs_report]").inner_text() == "1"


def test_a_failed_signature_puts_focus_on_the_error_summary(reading, browser, world):  # noqa: F811
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    _login(page, reading["base"], world.alice.email)
    page.goto(f"{reading['base']}/h/st-mary/studies/{reading['current'].pk}/review/")
    page.fill("#id_findings", "Clear lungs.")
    page.click("button[name=action][value=sign]")
    page.wait_for_load_state("networkidle")
    focused = page.evaluate("document.activeElement.getAttribute('data-error-summary') !== null")
    assert focused, page.evaluate("document.activeElement.outerHTML.slice(0, 200)")
    summary = page.locator("[data-error-summary]").inner_text()
    assert "Final label: choose your conclusion before signing." in summary
    assert "Impression: write your impression before signing." in summary
    assert page.evaluate("document.querySelector('[data-error-summary]').getBoundingClientRect().top") < 300
    page.click("[data-error-summary] a:has-text('Impression')")
    assert page.evaluate("document.activeElement.id") == "id_impression"
    assert page.input_value("#id_findings") == "Clear lungs."  # the draft was kept


def test_a_study_entered_in_error_leaves_the_worklist_and_the_patients_view(reading, browser, world):  # noqa: F811
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    _login(page, reading["base"], world.alice.email)
    prior = reading["prior"]
    page.goto(f"{reading['base']}/h/st-mary/studies/{prior.pk}/")
    page.click("details.mark-error summary")
    page.click("button:has-text('Mark as entered in error')")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("document.activeElement.getAttribute('data-error-summary') !== null")
    page.fill("#error_reason", "Filed under the wrong patient.")
    page.click("button:has-text('Mark as entered in error')")
    page.wait_for_load_state("networkidle")
    assert "marked as entered in error" in page.content()
    page.goto(f"{reading['base']}/h/st-mary/worklist/")
    assert page.locator(f"tr[data-study='{prior.pk}']").count() == 0
    with scopes_disabled():
        assert Study.objects.get(pk=prior.pk).entered_in_error_reason == "Filed under the wrong patient."

    patient = browser.new_context().new_page()
    _login(patient, reading["base"], world.paul.email)
    assert "Read the report" not in patient.content()
    response = patient.goto(f"{reading['base']}/h/st-mary/my/reports/{reading['prior_report'].pk}/")
    assert response.status == 410  # withdrawn: the page says so and shows nothing of the report
    assert "Filed under the wrong patient" not in patient.content()
    # The axe gate opens only pages that answer 200: check the withdrawn page, and the patient's
    # notifications that say so, here at both widths.
    violations = []
    for path in (f"/h/st-mary/my/reports/{reading['prior_report'].pk}/", "/h/st-mary/notifications/"):
        for width, viewport in VIEWPORTS.items():
            patient.set_viewport_size(viewport)
            patient.goto(reading["base"] + path)
            violations += [f"{width} {path}: {v}" for v in _axe(patient)]
    assert "A report of yours was withdrawn" in patient.content()
    assert not violations, violations


@pytest.mark.parametrize(("name", "width", "height"), [("desktop", 1366, 900), ("phone", 390, 844)])
def test_review_screen_screenshots(reading, browser, world, tmp_path, name, width, height):  # noqa: F811
    with scopes_disabled():
        report = report_services.start_report(reading["current"], world.alice)
        report_services.save_draft(
            report,
            world.alice,
            findings="Patchy opacity in the right lower zone.",
            impression="Appearances suggest pneumonia.",
            final_label="",
        )
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    _login(page, reading["base"], world.alice.email)
    page.goto(f"{reading['base']}/h/st-mary/studies/{reading['current'].pk}/review/")
    page.wait_for_selector("#viewer-review[data-ready=true][data-heatmap-ready=true]")
    page.wait_for_selector("#viewer-prior[data-ready=true]")
    page.check("#viewer-review-heatmap")
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # no sideways scrolling
    folder = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else Path(tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"review-{name}-{width}x{height}.png"))
