"""In a real browser against daphne: a doctor of a hospital that requires two-step verification
logs in with her password and the code of her authenticator app (computed here from the secret
set up for her), writes a report and signs it, confirming her identity again (password and code)
on the way; the text she typed is still there when she comes back to sign."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from ..auth import authenticator_for, totp_code, unused_code
from ..availability import require_chromium
from ..celery_worker import test_database_url
from ..factories import TEST_PASSWORD, make_study
from ..reports.helpers import make_diagnosis
from .test_clinical_flow import ROOT, _free_port, _wait_for_port, browser  # noqa: F401 - fixture
from .test_models_dashboard import _axe_violations

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def web(transactional_db, postgres_required, settings, tmp_path, world):
    """daphne alone on the test database (tasks inline, in-memory channel layer: no worker needed)."""
    require_chromium()
    import base64

    from django.contrib.auth.hashers import make_password

    from apps.accounts.models import User
    from imagemedix.hashers import BoundedArgon2PasswordHasher

    User.objects.update(password=make_password(TEST_PASSWORD, hasher=BoundedArgon2PasswordHasher()))
    key_id = settings.FILE_ENCRYPTION_ACTIVE_KEY_ID
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": "",
        "MEDIA_ROOT": str(media),
        "IMAGEMEDIX_VAR_DIR": str(tmp_path / "var"),
        "FILE_ENCRYPTION_KEYS": f"{key_id}:{base64.b64encode(settings.FILE_ENCRYPTION_KEYS[key_id]).decode()}",
        "DJANGO_DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
    }
    port = _free_port()
    log = open(tmp_path / "daphne.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "imagemedix.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def test_doctor_logs_in_with_totp_and_signs_with_reauthentication(web, browser, world):  # noqa: F811
    world.a.require_doctor_2fa = True
    world.a.save()
    device = authenticator_for(world.alice)  # her authenticator app holds this secret
    study = make_study(world.paul_record, world.alice)
    make_diagnosis(study)  # the AI read: viral pneumonia

    page = browser.new_context().new_page()
    page.goto(f"{web}/accounts/login/")
    page.fill("#id_username", world.alice.email)
    page.fill("#id_password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/accounts/2fa/verify/" in page.url, page.url
    assert "Two-step verification" in page.content()
    assert _axe_violations(page) == []
    page.fill("#id_code", totp_code(device))
    page.click("button:has-text('Continue')")
    page.wait_for_load_state("networkidle")
    assert page.url.rstrip("/").endswith("/h/st-mary"), page.url

    review = f"{web}/h/st-mary/studies/{study.pk}/review/"
    page.goto(review)
    page.fill("#id_findings", "Patchy opacity in the right lower zone.")
    page.fill("#id_impression", "Findings consistent with pneumonia.")
    page.select_option("#id_final_label", "bacterial_pneumonia")  # the doctor disagrees with the AI
    page.click("button[name=action][value=sign]")
    page.wait_for_load_state("networkidle")
    assert "/accounts/confirm/" in page.url, page.url
    assert "Confirm it is you" in page.content() and "sign a report" in page.content()
    assert _axe_violations(page) == []
    page.fill("#id_password", TEST_PASSWORD)
    page.fill("#id_code", unused_code(device))  # each code works once: not the login's
    page.click("button:has-text('Confirm')")
    page.wait_for_load_state("networkidle")

    # On to the signature page: her text, saved as a draft, to confirm.
    assert "/sign/" in page.url, page.url
    assert "Patchy opacity in the right lower zone." in page.content()
    assert "Findings consistent with pneumonia." in page.content()
    page.click("#confirm-sign")
    page.wait_for_load_state("networkidle")
    assert page.url.startswith(review), page.url
    assert "Amend this report" in page.content(), page.content()[-2000:]

    from django_scopes import scopes_disabled

    from apps.reports.models import Report, ReportStatus

    with scopes_disabled():
        report = Report.objects.get(study=study)
    assert report.status == ReportStatus.SIGNED and report.signed_by == world.alice


def test_hospital_admin_sets_up_the_authenticator_at_first_login(web, browser, world):  # noqa: F811
    """The first login of a hospital admin: the set-up page (QR code, key as text), the first code,
    the recovery codes once; then the account pages. No axe-core violations on any of them."""
    from django_otp.plugins.otp_totp.models import TOTPDevice

    page = browser.new_context().new_page()
    page.goto(f"{web}/accounts/login/")
    page.fill("#id_username", world.carol.email)
    page.fill("#id_password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert "/accounts/2fa/setup/" in page.url, page.url
    assert page.locator(".qr svg").count() == 1 and page.locator(".setup-key").inner_text().strip()
    assert _axe_violations(page) == []
    scanned = TOTPDevice.objects.get(user=world.carol, confirmed=False)  # what her phone now holds
    page.fill("#id_code", totp_code(scanned))
    page.click("button:has-text('Turn on two-step verification')")
    page.wait_for_load_state("networkidle")
    assert "shown only once" in page.content() and page.locator(".recovery-codes li").count() == 10
    assert _axe_violations(page) == []
    page.click("text=I have saved my codes")
    page.wait_for_load_state("networkidle")
    assert page.url.rstrip("/").endswith("/h/st-mary"), page.url

    for path in ("/accounts/security/", "/accounts/tokens/", "/h/st-mary/admin-tools/members/"):
        page.goto(web + path)
        assert _axe_violations(page) == [], path
    page.fill("#id_email", "new.doctor@st-mary.example")
    page.click("button:has-text('Send invitation')")
    page.wait_for_load_state("networkidle")
    assert "An invitation to join as doctor was sent to new.doctor@st-mary.example" in page.content()
