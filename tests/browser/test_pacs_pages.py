"""The hospital admin's PACS pages in a real browser (daphne, PostgreSQL, Redis, a Celery worker):
Carol creates an integration credential and copies its secret, then files a study that the PACS
sent with an unknown MRN under the right patient. Every page is checked with axe-core."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from apps.integration.credentials import authenticate, create_credential
from apps.integration.models import DicomStudy
from apps.integration.services import store_instance
from tests.integration.helpers import chest_xray_dicom, uids

from .test_clinical_flow import _login, browser, stack  # noqa: F401 - the shared stack and browser fixtures
from .test_models_dashboard import _axe_violations

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_admin_creates_a_credential_and_resolves_an_unmatched_study(stack, browser):  # noqa: F811
    base, world = stack["url"], stack["world"]
    with scopes_disabled():
        pacs = create_credential(world.a, name="Orthanc, radiology", actor=world.carol).credential
        data = chest_xray_dicom(patient_id="EXT-9", patient_name="POTTER^PAUL")
        assert store_instance(world.a, data, credential=pacs).held

    page = browser.new_context().new_page()
    _login(page, base, world.carol.email)
    page.goto(f"{base}/h/st-mary/")
    page.get_by_role("link", name="PACS").click()
    page.get_by_label("Name").fill("Viewer workstation")
    page.get_by_role("button", name="Create credential").click()
    page.wait_for_load_state("networkidle")
    issued = page.get_by_role("status")
    assert "shown only this once" in issued.inner_text()
    token = issued.locator("dd code").last.inner_text().removeprefix("Authorization: Bearer ")
    with scopes_disabled():
        assert authenticate(f"Bearer {token}").name == "Viewer workstation"
    assert _axe_violations(page) == []

    page.get_by_role("link", name="unmatched queue").click()
    assert "EXT-9" in page.locator("main").inner_text()
    assert _axe_violations(page) == []
    page.get_by_role("link", name="Resolve the study with Patient ID EXT-9").click()
    assert _axe_violations(page) == []
    page.get_by_label("Patient", exact=True).select_option(label="POTTER, Paul — MRN A-0001")
    page.get_by_role("button", name="File under this patient").click()
    page.wait_for_load_state("networkidle")
    assert "filed under Paul Potter" in page.locator(".messages").inner_text()
    with scopes_disabled():
        dicom_study = DicomStudy.objects.get(study_instance_uid=uids(data)[0])
        assert (dicom_study.patient, dicom_study.matched_by) == (world.paul_record, world.carol)
