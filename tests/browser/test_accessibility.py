"""The accessibility gate and the patient's view of a report, in real Chromium on the production
topology (daphne, PostgreSQL, Redis, a Celery worker).

* **axe-core over every page**: the pages are collected from the route table that the tenancy
  matrix checks against the URL conf (``tests/routes``): every GET route under ``/h/<slug>/``
  whose owner (or patient) gets a 200 is opened as that user: the doctor (Alice), the hospital
  admin (Carol) and the patient (Paul); the pages outside the hospital (``NON_SLUG`` of the
  matrix) are opened signed out and as the doctor. Each HTML page is checked at desktop
  (1366×900) and phone (390×844) width; no violation of impact "serious" or "critical" may
  remain. Downloads (images, PDFs, JSON) are not pages and are left out by their content type.
  axe-core is the copy bundled in the pinned ``axe-playwright-python`` (see tests/browser/README.md).
* **The patient reads a report whose doctor disagreed with the AI**: the conclusion comes first,
  the AI second read says the doctor concluded otherwise, the words are explained, the image shows.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled

from tests.routes import load_routes

from .test_clinical_flow import _login, browser, stack  # noqa: F401 - the shared stack and browser fixtures

pytestmark = [pytest.mark.browser, pytest.mark.integration]

VIEWPORTS = {"desktop": {"width": 1366, "height": 900}, "phone": {"width": 390, "height": 844}}
GATED_IMPACTS = {"serious", "critical"}
#: Not our pages: the API explorer is drf-spectacular's bundled Swagger UI, for developers (its
#: own markup has contrast and nested-control findings that only an upstream fix can change).
NOT_GATED = ("/api/",)
ROLES = {"doctor": "alice", "hospital admin": "carol", "patient": "paul"}


def _axe(page) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]})
    return [
        f"{v['impact']} {v['id']}: {v['help']} — {', '.join(str(n['target']) for n in v['nodes'][:3])}"
        for v in results.response["violations"]
        if v["impact"] in GATED_IMPACTS
    ]


def _slug_pages(world, persona: str) -> list[str]:
    """The hospital pages ``persona`` may open, from the route table (objects made as it says)."""
    urls = []
    for route in load_routes():
        if route.method != "GET" or route.name.startswith("api"):
            continue
        mine = route.owner[0] == persona and 200 in route.expected("owner")
        if persona == "paul":
            mine = mine or 200 in route.expected("patient")
        if not mine:
            continue
        with scopes_disabled():
            kwargs = {"hospital_slug": world.a.slug, **route.kwargs(world)}
        urls.append(reverse(route.name, kwargs=kwargs))
    return urls


def _outside_pages(signed_in: bool) -> list[str]:
    from tests.test_tenancy_matrix import NON_SLUG

    pages = []
    for name, (method, kwargs, anon, member) in NON_SLUG.items():
        if method == "GET" and (member if signed_in else anon) == 200:
            pages.append(reverse(name, kwargs=kwargs))
    return pages


def _off_loop(fn, *args):
    """Run ``fn`` in another thread: Playwright's sync API keeps an event loop in this one, where
    the notifications that signing and sharing send (``async_to_sync``) cannot run."""
    from django.db import connection

    def call():
        try:
            return fn(*args)
        finally:
            connection.close()  # this thread's own connection, so the test database can be dropped

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result()


def _check_pages(context, base: str, paths: list[str], who: str) -> tuple[list[str], int]:
    page = context.new_page()
    failures, checked = [], 0
    for path in dict.fromkeys(paths):  # once each, in order
        if path.startswith(NOT_GATED):
            continue
        response = page.request.get(base + path, max_redirects=0)
        if response.status != 200 or not response.headers.get("content-type", "").startswith("text/html"):
            continue  # a download, a redirect on to another page of the list, or a POST-only form
        for width, viewport in VIEWPORTS.items():
            page.set_viewport_size(viewport)
            page.goto(base + path)
            page.wait_for_load_state("networkidle")
            failures += [f"{who} {width} {path}: {v}" for v in _axe(page)]
        checked += 1
    page.close()
    return failures, checked


def _disagreeing_report(world):
    """Paul's chest X-ray: the AI said viral pneumonia (70%), Dr Alice concluded bacterial."""
    from apps.reports import services
    from apps.studies.models import Study
    from tests.factories import make_study
    from tests.reports.helpers import make_diagnosis, write_report

    with scopes_disabled():
        study = make_study(world.paul_record, world.alice)
        make_diagnosis(study)
        Study.objects.filter(pk=study.pk).update(modality="chest_xray")
    report = write_report(
        study,
        world.alice,
        findings="Right lower zone consolidation. No pleural effusion.",
        impression="Lobar pneumonia, likely bacterial.",
        final_label="bacterial_pneumonia",
        sign=True,
    )
    with scopes_disabled():
        return services.render_report_pdf_now(report.pk)


def test_patient_reads_a_report_whose_doctor_disagreed_with_the_ai(stack, browser):  # noqa: F811
    from apps.reports.plain import AI_SECTION_TITLE, DIFFERENT_CONCLUSION

    base, world = stack["url"], stack["world"]
    report = _off_loop(_disagreeing_report, world)
    context = browser.new_context(viewport=VIEWPORTS["phone"])
    page = context.new_page()
    _login(page, base, world.paul.email)
    page.goto(f"{base}/h/st-mary/my/")
    card = page.locator(".portal-card").first
    assert card.locator("h3").inner_text().startswith("Chest X-ray report from ")
    assert " at " in card.locator("h3").inner_text()  # the time, so two cards of one day differ
    card.get_by_role("link", name="Read the report").click()
    page.wait_for_load_state("networkidle")

    headings = page.locator("main h2").all_inner_texts()
    assert headings[0] == "What your doctor concluded"
    assert headings.index("What your doctor concluded") < headings.index(AI_SECTION_TITLE)
    assert page.locator(".conclusion .big").inner_text() == "Bacterial pneumonia"
    different = page.get_by_text(DIFFERENT_CONCLUSION)
    assert different.is_visible()
    assert page.locator(".ai-section").get_by_text("Viral pneumonia").is_visible()
    glossary = page.locator("dl.glossary")
    assert glossary.locator("dt", has_text="Consolidation").is_visible()
    assert "air spaces are filled" in glossary.inner_text()
    image = page.locator(".key-image img")
    image.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
    assert "heatmap" not in page.locator("main").inner_text().lower()
    assert _axe(page) == []
    with page.expect_download() as download:
        page.get_by_role("link", name="Download the report (PDF)").click()
    assert download.value.suggested_filename == f"report-A-0001-v{report.version}.pdf"
    context.close()


def test_every_page_of_every_role_passes_axe_at_desktop_and_phone_width(stack, browser):  # noqa: F811
    base, world = stack["url"], stack["world"]
    _off_loop(_disagreeing_report, world)  # so that the patient's pages and the staff's report pages have content
    failures, checked = [], {}

    anonymous = browser.new_context()
    found, checked["signed out"] = _check_pages(anonymous, base, _outside_pages(signed_in=False), "signed out")
    failures += found
    anonymous.close()

    for role, persona in ROLES.items():
        context = browser.new_context()
        login = context.new_page()
        _login(login, base, getattr(world, persona).email)
        login.close()
        paths = _off_loop(_slug_pages, world, persona)
        if role == "doctor":
            paths += _outside_pages(signed_in=True)
        found, checked[role] = _check_pages(context, base, paths, role)
        failures += found
        context.close()

    print("HTML pages checked, each at two widths:", checked)  # shown with pytest -rP
    # The gate must have looked at the pages it is about, not at an empty list.
    assert checked["doctor"] >= 10 and checked["hospital admin"] >= 5 and checked["patient"] >= 3, checked
    assert not failures, "axe-core found serious or critical violations:\n  " + "\n  ".join(failures)
