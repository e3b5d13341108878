"""End to end in a real browser, on the production topology: daphne (HTTP + WebSocket) and a
Celery worker as separate processes, PostgreSQL, Redis as broker and channels-redis layer.

The acceptance flow of the clinical workflow, as a person would do it: a doctor logs in, sees her
caseload, uploads a chest X-ray and watches it go from queued to done without reloading; she
reviews it in the viewer with the heatmap layer, writes her read and report in one form and signs
it after re-entering her password and confirming what she signs; the Celery worker renders the
PDF, whose link appears on her open page.
The patient logs in, reads the signed report, downloads the PDF and messages the doctor, whose
open conversation shows the message live.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..availability import CHROMIUM, require_chromium
from ..celery_worker import run_name, test_database_url
from ..factories import TEST_PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
CHEST_XRAY = ROOT / "tests" / "fixtures" / "chest_xray.jpg"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"nothing listening on {port}")


@pytest.fixture
def stack(transactional_db, postgres_required, redis_url, settings, tmp_path, world):
    """daphne + a Celery worker on the test database, sharing media folder and key."""
    require_chromium()
    # The servers use the production hashers (Argon2), not the tests' fast MD5.
    from django.contrib.auth.hashers import make_password

    from apps.accounts.models import User
    from imagemedix.hashers import BoundedArgon2PasswordHasher

    User.objects.update(password=make_password(TEST_PASSWORD, hasher=BoundedArgon2PasswordHasher()))
    database_url = test_database_url()
    media = tmp_path / "media"
    media.mkdir(exist_ok=True)
    key_id = settings.FILE_ENCRYPTION_ACTIVE_KEY_ID
    import base64

    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "CHANNELS_PREFIX": run_name("browser"),
        "CELERY_QUEUE": run_name("browser"),
        "MEDIA_ROOT": str(media),
        "IMAGEMEDIX_VAR_DIR": str(tmp_path / "var"),
        "FILE_ENCRYPTION_KEYS": f"{key_id}:{base64.b64encode(settings.FILE_ENCRYPTION_KEYS[key_id]).decode()}",
        "DJANGO_DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
    }
    port = _free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    web = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "imagemedix.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=open(logs / "daphne.log", "w"),
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "imagemedix",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "-Q",
            run_name("browser"),
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=open(logs / "worker.log", "w"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, web)
        yield {"url": f"http://127.0.0.1:{port}", "world": world, "logs": logs}
    finally:
        for proc in (web, worker):
            proc.send_signal(signal.SIGTERM)
        for proc in (web, worker):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def browser():
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # synchronous and safe, so Django's async guard is relaxed for this test only.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
            ],
        )
        try:
            yield b
        finally:
            b.close()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def _tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def _login(page, base: str, email: str) -> None:
    """Password, then, where it is asked for, the code of the user's authenticator app (set up for
    them here if they have none, as if they had scanned the QR code earlier)."""
    from apps.accounts.models import User

    from ..auth import authenticator_for, needs_code, unused_code

    user = User.objects.get(email=email)
    device = authenticator_for(user) if needs_code(user) else None
    page.goto(base + "/accounts/login/")
    page.fill("#id_username", email)
    page.fill("#id_password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    if device is not None:
        assert "/accounts/2fa/verify/" in page.url, page.url
        page.fill("#id_code", unused_code(device))
        page.click("button:has-text('Continue')")
        page.wait_for_load_state("networkidle")


def test_doctor_uploads_reviews_and_signs_then_patient_reads_downloads_and_chats(stack, browser, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    base, world = stack["url"], stack["world"]
    doctor_ctx = browser.new_context()
    page = doctor_ctx.new_page()
    _login(page, base, world.alice.email)
    assert page.url.rstrip("/").endswith("/h/st-mary"), page.url
    assert "Potter" in page.content()  # her patient
    assert "Owens" not in page.content() and "Baker" not in page.content()  # not hers / other hospital

    # Upload, with a preview before submitting.
    page.goto(f"{base}/h/st-mary/upload/?patient={world.paul_record.pk}")
    page.set_input_files("input[type=file][name=image]", str(CHEST_XRAY))
    page.wait_for_selector("#preview-img", state="visible")
    page.click("#upload-submit")
    page.wait_for_url("**/studies/*/", timeout=30_000)
    study_url = page.url
    page.evaluate("window.__noReloadMarker = 42")

    # The worker reads the study; the page hears about it over the WebSocket.
    status = page.locator("[data-study-status]").first
    try:
        page.wait_for_function(
            """() => { const el = document.querySelector('[data-study-status]'), c = el && el.className;
                       return c && ['done', 'unsure', 'refused', 'failed'].some(s => c.includes('status-' + s)); }""",
            timeout=120_000,
        )
    except PlaywrightTimeout:
        from django_scopes import scopes_disabled

        from apps.studies.models import Study

        with scopes_disabled():
            stored = list(Study.objects.values_list("pk", "status", "status_message"))
        pytest.fail(
            f"the page never showed the finished study; studies in the database: {stored}\n"
            f"--- worker log ---\n{_tail(stack['logs'] / 'worker.log')}\n"
            f"--- daphne log ---\n{_tail(stack['logs'] / 'daphne.log')}"
        )
    assert page.evaluate("window.__noReloadMarker") == 42, "the page reloaded instead of updating live"
    worker_log = (stack["logs"] / "worker.log").read_text()
    message = page.locator("[data-study-message]").first.inner_text()
    assert "status-done" in status.get_attribute("class"), f"study failed: {message}\n{worker_log[-3000:]}"

    # Review: the image in the viewer with the heatmap as a layer, bars, the notice.
    page.goto(study_url.rstrip("/") + "/review/")
    assert "assistive, not a diagnosis" in page.content()
    viewer = page.locator("#viewer-review")
    page.wait_for_selector("#viewer-review[data-ready=true][data-heatmap-ready=true]")
    assert page.locator(".prob-bars li").count() == 3  # normal / bacterial / viral
    assert "chest-" in page.locator(".model-version").inner_text()
    assert viewer.get_attribute("data-heatmap") == "off"  # the doctor looks at the image first
    page.check("#viewer-review-heatmap")
    page.locator("#viewer-review-opacity").fill("20")
    assert viewer.get_attribute("data-heatmap") == "on"
    assert "AI heatmap on at 20 %" in viewer.locator(".viewer-status").inner_text()

    # One form: the final label starts empty (the AI's suggestion beside it); sign after confirming.
    assert page.locator("#id_final_label").input_value() == ""
    assert "AI suggests:" in page.locator("#ai-suggestion").inner_text()
    page.select_option("#id_final_label", "normal")
    page.fill("#id_ai_comment", "Agree, no consolidation.")
    page.fill("#id_findings", "Patchy opacity in the right lower zone.")
    page.fill("#id_impression", "Findings consistent with pneumonia; clinical correlation advised.")
    page.click("button[name=action][value=sign]")
    page.wait_for_load_state("networkidle")
    assert "/accounts/confirm/" in page.url, page.url  # signing asks for the password again
    page.fill("#id_password", TEST_PASSWORD)
    page.click("button:has-text('Confirm')")
    page.wait_for_selector("#confirm-sign")
    assert "consistent with pneumonia" in page.content()  # the doctor sees what they sign
    page.click("#confirm-sign")
    page.wait_for_load_state("networkidle")
    assert "Amend this report" in page.content()  # signed: now immutable, only amendable
    # The worker renders the PDF; the link appears on the open page, without a reload.
    page.evaluate("window.__noReloadMarker = 99")
    page.wait_for_selector("[data-report-pdf] a:has-text('Download PDF')", timeout=90_000)
    assert page.evaluate("window.__noReloadMarker") == 99, "the page reloaded instead of updating live"

    # The patient: portal, signed report, PDF download, a message to the doctor.
    patient_ctx = browser.new_context()
    patient = patient_ctx.new_page()
    _login(patient, base, world.paul.email)
    assert "/h/st-mary/my" in patient.url, patient.url
    body = patient.content()
    assert "Owens" not in body and "Baker" not in body  # nobody else's records
    assert "Study #" not in body  # patients read signed reports, never raw studies or AI-only results
    patient.click("text=Read the report")
    assert "consistent with pneumonia" in patient.content()
    with patient.expect_download() as download_info:
        patient.click("text=Download the report (PDF)")
    pdf_path = tmp_path / "report.pdf"
    download_info.value.save_as(pdf_path)
    from pypdf import PdfReader

    pdf_text = "".join(p.extract_text() for p in PdfReader(pdf_path).pages)
    assert "Potter" in pdf_text and "consistent with pneumonia" in pdf_text

    patient.click("text=Ask your doctor a question")
    patient.click("form.inline button[type=submit]")  # "Write to <doctor>": opens the conversation
    patient.wait_for_selector("#chat-body")
    conversation_url = patient.url

    page.goto(conversation_url)  # the doctor opens the same conversation
    page.wait_for_selector("#chat-log")
    page.evaluate("window.__noReloadMarker = 7")
    page.wait_for_timeout(500)  # let the socket connect
    patient.fill("#chat-body", "Thank you, doctor. Should I <b>rest</b> this week?")
    patient.click("#chat-form button[type=submit]")
    page.wait_for_function(
        "() => document.getElementById('chat-log').innerText.includes('Should I <b>rest</b> this week?')",
        timeout=30_000,
    )
    assert page.evaluate("window.__noReloadMarker") == 7, "the doctor's page reloaded instead of updating live"
    assert page.locator("#chat-log b").count() == 0  # escaped, not rendered as HTML
    assert patient.goto(f"{base}/h/st-mary/").status == 403  # patients never reach the staff pages
    patient_ctx.close()
    doctor_ctx.close()
