"""The pages work under the Content-Security-Policy: a real Chromium loads the main pages of a
doctor, a patient and a hospital admin on the production topology (daphne, PostgreSQL,
channels-redis) and reports no CSP violation, while the live parts (the notification socket,
the upload preview from a blob: URL, a chat message arriving without a reload, the API docs)
still work.
"""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from ..factories import make_study
from ..reports.helpers import make_diagnosis
from .test_clinical_flow import CHEST_XRAY, _login, browser, stack  # noqa: F401 - fixtures

pytestmark = [pytest.mark.browser, pytest.mark.integration]

#: Runs before any page script: every violation the browser reports is kept for the test.
COLLECT_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline")
                    + " at " + e.sourceFile + ":" + e.lineNumber);
});
"""


class Visitor:
    """One logged-in browser context that records CSP violations from events and the console."""

    def __init__(self, chromium, base: str, email: str) -> None:
        self.context = chromium.new_context()
        self.context.add_init_script(COLLECT_VIOLATIONS)
        self.page = self.context.new_page()
        self.console: list[str] = []
        self.page.on(
            "console",
            lambda msg: self.console.append(msg.text) if "Content Security Policy" in msg.text else None,
        )
        self.base = base
        _login(self.page, base, email)

    def visit(self, path: str) -> None:
        response = self.page.goto(self.base + path)
        assert response is not None and response.status == 200, (path, response and response.status)
        assert "script-src 'self'" in response.headers["content-security-policy"], path
        self.page.wait_for_load_state("networkidle")
        self.check(path)

    def check(self, where: str) -> None:
        violations = self.page.evaluate("window.__csp") + self.console
        assert violations == [], f"CSP violations on {where}: {violations}"


@pytest.fixture
def scene(stack):  # noqa: F811 - the fixture imported above
    """A finished AI read with its heatmap, an unread notification, and a conversation."""
    from apps.chat import notifications
    from apps.chat.services import start_conversation
    from apps.studies.models import StudyStatus
    from apps.studies.services import set_study_status

    w = stack["world"]
    study = make_study(w.paul_record, w.alice)
    with scopes_disabled():
        make_diagnosis(study)
        set_study_status(study.pk, w.a.pk, StudyStatus.DONE, "AI read ready.", modality="chest_xray")
        notifications.notify(hospital_id=w.a.pk, user_id=w.alice.pk, kind="result_ready", title="AI read ready")
        conversation = start_conversation(w.paul_record, w.alice, actor=w.alice)
    return {**stack, "study": study, "conversation": conversation}


def test_main_pages_have_no_csp_violations_and_live_parts_still_work(scene, browser):  # noqa: F811 - fixture
    base, w, study = scene["url"], scene["world"], scene["study"]
    slug = w.a.slug
    doctor = Visitor(browser, base, w.alice.email)
    for path in (
        f"/h/{slug}/",
        f"/h/{slug}/patients/{w.paul_record.pk}/",
        f"/h/{slug}/studies/{study.pk}/",
        f"/h/{slug}/studies/{study.pk}/review/",
        f"/h/{slug}/patients/{w.paul_record.pk}/timeline/",
        f"/h/{slug}/messages/",
        f"/h/{slug}/notifications/",
        "/accounts/password/change/",
        "/api/docs/",
    ):
        doctor.visit(path)

    # The notification socket connects under the policy: its "hello" fills in the unread count.
    from apps.chat.models import Notification

    with scopes_disabled():
        unread = Notification.objects.filter(user=w.alice, hospital=w.a, read_at__isnull=True).count()
    assert unread > 0
    doctor.visit(f"/h/{slug}/")
    doctor.page.wait_for_function(f"() => document.getElementById('notif-count').textContent === '{unread}'")
    # The review page's image viewer fetches and draws the image, and its tools work.
    doctor.visit(f"/h/{slug}/studies/{study.pk}/review/")
    doctor.page.wait_for_selector("#viewer-review[data-ready=true]")
    doctor.page.click("#viewer-review [data-action=invert]")
    assert doctor.page.get_attribute("#viewer-review [data-action=invert]", "aria-pressed") == "true"
    doctor.check("the image viewer")
    # The upload preview draws the chosen file from a blob: URL.
    doctor.visit(f"/h/{slug}/upload/?patient={w.paul_record.pk}")
    doctor.page.set_input_files("input[type=file][name=image]", str(CHEST_XRAY))
    doctor.page.wait_for_selector("#preview-img", state="visible")
    doctor.check("the upload preview")
    # The API docs render the schema (their script is a file of its own now, not inline).
    doctor.visit("/api/docs/")
    doctor.page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)
    doctor.check("the API docs")

    # Chat: the patient writes, the doctor's open conversation shows it live.
    conversation_path = f"/h/{slug}/messages/{scene['conversation'].pk}/"
    doctor.visit(conversation_path)
    doctor.page.evaluate("window.__noReloadMarker = 1")
    patient = Visitor(browser, base, w.paul.email)
    for path in (f"/h/{slug}/my/", conversation_path):
        patient.visit(path)
    doctor.page.wait_for_timeout(500)  # let the socket connect
    patient.page.fill("#chat-body", "Is the result back?")
    patient.page.click("#chat-form button[type=submit]")
    doctor.page.wait_for_function(
        "() => document.getElementById('chat-log').innerText.includes('Is the result back?')", timeout=30_000
    )
    assert doctor.page.evaluate("window.__noReloadMarker") == 1, "the doctor's page reloaded instead of updating live"
    doctor.check("the live chat")
    patient.check("the chat")

    admin = Visitor(browser, base, w.carol.email)
    for path in (
        f"/h/{slug}/",
        f"/h/{slug}/admin-tools/members/",
        f"/h/{slug}/admin-tools/assignments/",
        f"/h/{slug}/audit/",
    ):
        admin.visit(path)
    for visitor in (doctor, patient, admin):
        visitor.context.close()
