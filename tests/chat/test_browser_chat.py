"""The chat and live notifications in a real browser: daphne serving HTTP and WebSockets as a
separate process, PostgreSQL, channels-redis on Redis, headless Chromium running chat.js and
live.js.

Alice and Paul chat live (no reloads); text that looks like HTML stays text; Paul is told
about a new message on another page; a study status change reaches Alice's open study list;
the form works with JavaScript off; unassigning Alice closes Paul's open chat.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django_scopes import scopes_disabled

from apps.chat.models import Message
from apps.studies import services as study_services
from tests.auth import Client

from ..availability import CHROMIUM, require_chromium
from .conftest import make_conversation, make_study_row

pytestmark = [pytest.mark.browser, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def daphne(live, postgres_required, redis_url, settings, tmp_path):
    require_chromium()
    from django.db import connection

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": redis_url,
        "CHANNELS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        "DJANGO_SECRET_KEY": settings.SECRET_KEY,  # the sessions made here must validate there
        "IMAGEMEDIX_VAR_DIR": str(tmp_path / "var"),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "DJANGO_DEBUG": "1",
        "PYTHONUNBUFFERED": "1",
    }
    port = _free_port()
    log = open(tmp_path / "daphne.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "imagemedix.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "daphne.log").read_text()[-3000:]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "daphne did not start"
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser():
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"  # Playwright's sync API runs a loop here
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def _session(user):
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


def _page(browser, base, user, javascript=True):
    context = browser.new_context(java_script_enabled=javascript)
    context.add_cookies([{"name": "sessionid", "value": _off_loop(_session, user), "url": base}])
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    return page


def _off_loop(fn, *args, **kwargs):
    """Run database work in a worker thread that closes its connection: Playwright's event loop
    owns this thread (the services' async_to_sync pushes cannot run here, and connections
    opened here would outlive the test)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_scoped_call, fn, *args, **kwargs).result()


def _scoped_call(fn, *args, **kwargs):
    from django.db import connection

    try:
        with scopes_disabled():
            return fn(*args, **kwargs)
    finally:
        connection.close()


def _bodies(page):
    return page.eval_on_selector_all(".chat-body", "els => els.map(e => e.textContent)")


def test_live_chat_in_the_browser(live, daphne, browser):
    w, base = live, daphne
    conversation = _off_loop(make_conversation, w)
    study = _off_loop(make_study_row, w.paul_record, w.alice)
    url = f"{base}/h/{w.a.slug}/messages/{conversation.pk}/"
    # Predicates are arrow functions: Playwright evaluates a bare expression string with eval, which the
    # page's Content-Security-Policy (no 'unsafe-eval') refuses.
    connected = "() => document.getElementById('chat-status').textContent.startsWith('Connected')"

    alice, paul = _page(browser, base, w.alice), _page(browser, base, w.paul)
    for page in (alice, paul):
        page.goto(url)
        page.wait_for_function(connected, timeout=15_000)
        page.evaluate("window.__noReload = 1")

    # Alice → Paul over the socket; HTML-looking text stays text.
    alice.fill("#chat-body", "Hello <b>Paul</b> <img src=x onerror=alert(1)>")
    alice.click("#chat-form button[type=submit]")
    paul.wait_for_selector(".chat-message:not(.mine)", timeout=15_000)
    assert _bodies(paul) == ["Hello <b>Paul</b> <img src=x onerror=alert(1)>"]
    assert paul.locator(".chat-body b, .chat-body img").count() == 0
    assert alice.input_value("#chat-body") == ""

    # Paul → Alice.
    paul.fill("#chat-body", "Thank you, doctor")
    paul.click("#chat-form button[type=submit]")
    alice.wait_for_function("() => document.querySelectorAll('.chat-message:not(.mine)').length === 1", timeout=15_000)
    assert _bodies(alice)[-1] == "Thank you, doctor"
    assert alice.locator(".chat-message.mine").count() == 1
    assert alice.evaluate("window.__noReload") == paul.evaluate("window.__noReload") == 1

    # Alice's study list hears about a status change live (live.js on every page).
    alice_study = alice.context.new_page()
    alice_study.goto(f"{base}/h/{w.a.slug}/notifications/")
    alice_study.evaluate(
        f"""() => {{ const s = document.createElement('span'); s.dataset.studyStatus = '{study.pk}';
                 s.className = 'status status-queued'; s.id = 'probe'; document.body.appendChild(s); }}"""
    )
    alice_study.wait_for_timeout(500)  # let live.js connect
    _off_loop(study_services.set_study_status, study.pk, w.a.pk, "done", "Chest X-ray read.")
    alice_study.wait_for_function(
        "() => document.getElementById('probe').textContent === 'AI read ready'", timeout=15_000
    )
    assert "status-done" in alice_study.get_attribute("#probe", "class")
    alice_study.wait_for_function("() => document.getElementById('notif-count').textContent === '1'", timeout=15_000)

    # Without JavaScript the plain form posts and redirects; Alice sees it arrive live.
    nojs = _page(browser, base, w.paul, javascript=False)
    nojs.goto(url)
    nojs.fill("#chat-body", "Sent without JavaScript")
    nojs.click("#chat-form button[type=submit]")
    assert nojs.url.endswith("#latest")
    assert "Sent without JavaScript" in _bodies(nojs)
    alice.wait_for_function(
        "() => Array.from(document.querySelectorAll('.chat-body'))"
        ".some(e => e.textContent === 'Sent without JavaScript')",
        timeout=15_000,
    )

    # Unassigning Alice closes Paul's open chat.
    _off_loop(study_services.unassign_doctor, w.paul_record, w.alice, actor=w.carol)
    paul.wait_for_function("() => document.getElementById('chat-body').disabled", timeout=15_000)
    assert "no longer caring" in paul.text_content("#chat-error")
    assert alice.goto(url).status == 404
    assert paul.js_errors == [] and alice.js_errors == []
    assert _off_loop(Message.objects.count) == 3
