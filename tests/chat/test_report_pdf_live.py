"""The live "PDF ready" link: when a signed report's PDF is stored, the doctors who hear about the
study get a ``report.pdf`` event (and a page that connects later asks for it), on the real stack."""

from __future__ import annotations

import pytest
from django_scopes import scopes_disabled

from apps.reports import services as report_services
from tests.factories import make_study
from tests.reports.helpers import write_report

from .conftest import db, run

pytestmark = pytest.mark.integration


def notif_path(hospital) -> str:
    return f"/ws/h/{hospital.slug}/notifications/"


def test_the_pdf_link_reaches_the_care_team_when_the_pdf_is_stored(live, ws):
    w = live
    with scopes_disabled():
        study = make_study(w.paul_record, w.alice)
    report = write_report(study, w.alice, sign=True)

    async def scenario():
        alice = await ws.open(notif_path(w.a), w.alice)
        bob = await ws.open(notif_path(w.a), w.bob)
        paul = await ws.open(notif_path(w.a), w.paul)
        await db(report_services.render_report_pdf_now)(report.pk)
        event = await alice.receive_json_from(timeout=10)
        assert event == {
            "type": "report.pdf",
            "report_id": report.pk,
            "study_id": study.pk,
            "status": "ready",
            "label": "Ready",
            "url": f"/h/st-mary/reports/{report.pk}/pdf/",
        }
        for other in (bob, paul):  # not on the care team; the patient has his own notification
            assert await other.receive_nothing(timeout=0.3)
        for comm in (alice, bob, paul):
            await comm.disconnect()

    run(scenario)


def test_a_page_that_connects_later_asks_for_the_pdf(live, ws):
    w = live
    with scopes_disabled():
        study = make_study(w.paul_record, w.alice)
    report = write_report(study, w.alice, sign=True)
    draft = write_report(make_study(w.paul_record, w.alice), w.alice)
    with scopes_disabled():
        report_services.render_report_pdf_now(report.pk)

    async def scenario():
        alice = await ws.open(notif_path(w.a), w.alice)
        await alice.send_json_to({"type": "reports", "ids": [report.pk, draft.pk, report.pk + 999, "x"]})
        event = await alice.receive_json_from(timeout=5)
        assert (event["type"], event["report_id"], event["status"]) == ("report.pdf", report.pk, "ready")
        assert await alice.receive_nothing(timeout=0.3)  # drafts have no PDF; unknown ids are left out
        # Bob and Dora may not read Paul's report: nothing comes back.
        for user, hospital in ((w.bob, w.a), (w.dora, w.b)):
            comm = await ws.open(notif_path(hospital), user)
            await comm.send_json_to({"type": "reports", "ids": [report.pk]})
            assert await comm.receive_nothing(timeout=0.3)
            await comm.disconnect()
        await alice.send_json_to({"type": "reports", "ids": "all"})
        error = await alice.receive_json_from(timeout=5)
        assert (error["type"], error["code"]) == ("error", "invalid")
        await alice.disconnect()

    run(scenario)
