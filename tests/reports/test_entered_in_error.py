"""Entered in error: a doctor caring for the patient marks a study with a reason; it leaves the
worklist, the priors and the patient's view, no report can be written on it, and nothing is
deleted: the row, its file and the audit event stay."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.chat.models import Notification, NotificationKind
from apps.reports import services as report_services
from apps.reports.models import Report
from apps.studies import services
from apps.studies.models import Study
from tests.factories import make_study

from .helpers import write_report

pytestmark = pytest.mark.django_db


def url(name, *args):
    return reverse(name, args=["st-mary", *args])


def test_marking_keeps_everything_and_audits_the_reason(client, world, media_files):
    study = make_study(world.paul_record, world.alice)
    files = media_files()
    client.force_login(world.alice)
    response = client.post(url("studies:entered_in_error", study.pk), {"reason": "Wrong patient."})
    assert response.status_code == 302 and response["Location"] == url("studies:patient_detail", world.paul_record.pk)
    with scopes_disabled():
        study = Study.objects.get(pk=study.pk)
        event = AuditEvent.objects.get(action="study.entered_in_error")
    assert study.entered_in_error and study.entered_in_error_by == world.alice
    assert study.entered_in_error_reason == "Wrong patient."
    assert (event.actor, event.object_id, event.detail["reason"]) == (world.alice, str(study.pk), "Wrong patient.")
    assert media_files() == files  # nothing deleted
    page = client.get(url("studies:study_detail", study.pk)).content.decode()
    assert "Entered in error" in page and "Wrong patient." in page
    assert url("reports:review", study.pk) not in page
    history = client.get(url("studies:patient_detail", world.paul_record.pk)).content.decode()
    assert "Entered in error" in history  # still listed on the clinician's side, marked


def test_a_reason_is_required_and_named(client, world):
    study = make_study(world.paul_record, world.alice)
    client.force_login(world.alice)
    response = client.post(url("studies:entered_in_error", study.pk), {"reason": "  "})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'href="#error_reason"' in html and "Why was this study entered in error?: say why" in html
    with scopes_disabled():
        assert not Study.objects.get(pk=study.pk).entered_in_error


@pytest.mark.parametrize(("persona", "status"), [("bob", 404), ("carol", 403), ("paul", 403), ("dora", 404)])
def test_only_a_doctor_caring_for_the_patient_may_mark_it(client, world, persona, status):
    study = make_study(world.paul_record, world.alice)
    client.force_login(getattr(world, persona))
    assert client.post(url("studies:entered_in_error", study.pk), {"reason": "x"}).status_code == status
    with scopes_disabled():
        assert not Study.objects.get(pk=study.pk).entered_in_error


def test_it_leaves_the_worklist_the_priors_and_the_patients_view(client, world):
    prior = make_study(world.paul_record, world.alice)
    current = make_study(world.paul_record, world.alice)
    with scopes_disabled():
        Study.objects.filter(pk__in=[prior.pk, current.pk]).update(modality="chest_xray")
    signed = write_report(prior, world.alice, sign=True)
    client.force_login(world.paul)
    assert client.get(url("reports:my_report", signed.pk)).status_code == 200
    with scopes_disabled():
        services.mark_entered_in_error(prior, world.alice, reason="Not this patient's film.")
    withdrawn = client.get(url("reports:my_report", signed.pk))
    assert withdrawn.status_code == 410 and "This report was withdrawn" in withdrawn.content.decode()
    assert "Read the report" not in client.get(url("reports:my_home")).content.decode()  # no report card

    client.force_login(world.alice)
    worklist = client.get(url("reports:worklist")).content.decode()
    assert f'data-study="{prior.pk}"' not in worklist and f'data-study="{current.pk}"' in worklist
    assert (
        f'data-study="{prior.pk}"'
        in client.get(url("reports:worklist"), {"state": "entered_in_error"}).content.decode()
    )
    review = client.get(url("reports:review", current.pk)).content.decode()
    assert 'id="viewer-prior"' not in review  # no longer offered for comparison


def test_no_report_can_be_written_on_it(world):
    study = make_study(world.paul_record, world.alice)
    draft = write_report(study, world.alice)
    with scopes_disabled():
        services.mark_entered_in_error(study, world.alice, reason="Duplicate of another study.")
        with pytest.raises(ValidationError):
            report_services.sign_report(Report.objects.get(pk=draft.pk), world.alice)
        with pytest.raises(ValidationError):
            services.mark_entered_in_error(study, world.alice, reason="Again.")
        other = make_study(world.paul_record, world.alice)
        services.mark_entered_in_error(other, world.alice, reason="Wrong file.")
        with pytest.raises(ValidationError):
            report_services.start_report(other, world.alice)


def test_the_patients_report_ready_notification_says_the_report_was_withdrawn(client, world):
    """Paul was told "Your report is ready"; the study is then entered in error. His notification no
    longer links to the report and is marked withdrawn, he is told once that it was withdrawn, and
    the old link explains that instead of "not found". Nobody else's report page changes."""
    study = make_study(world.paul_record, world.alice)
    other = write_report(make_study(world.paul_record, world.alice), world.alice, sign=True)
    signed = write_report(study, world.alice, sign=True)
    report_url = url("reports:my_report", signed.pk)
    with scopes_disabled():
        ready = Notification.objects.get(
            user=world.paul, kind=NotificationKind.REPORT_SIGNED, data__report_id=signed.pk
        )
    assert ready.url == report_url
    client.force_login(world.paul)
    assert f'href="{report_url}"' in client.get(url("chat:notifications")).content.decode()

    client.force_login(world.alice)
    client.post(url("studies:entered_in_error", study.pk), {"reason": "Wrong patient."})
    client.post(url("studies:entered_in_error", study.pk), {"reason": "Again."})  # refused: still told once

    client.force_login(world.paul)
    with scopes_disabled():
        ready.refresh_from_db()
        [told] = Notification.objects.filter(user=world.paul, kind=NotificationKind.REPORT_WITHDRAWN)
        untouched = Notification.objects.get(user=world.paul, data__report_id=other.pk)
    assert (ready.url, ready.data["withdrawn"]) == ("", True)
    assert "entered in error" in ready.body
    assert (told.url, told.title, told.read_at) == (report_url, "A report of yours was withdrawn", None)
    assert untouched.url == url("reports:my_report", other.pk) and "withdrawn" not in untouched.data
    page = client.get(url("chat:notifications")).content.decode()
    assert f'href="{report_url}"' in page  # only once: the "withdrawn" notice, which explains
    assert page.count(f'href="{report_url}"') == 1 and "Withdrawn</span>" in page
    response = client.get(report_url)
    assert response.status_code == 410
    body = response.content.decode()
    assert "This report was withdrawn" in body and signed.findings not in body
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="report.view_withdrawn", object_id=str(signed.pk)).count() == 1
    assert client.get(url("reports:my_report", other.pk)).status_code == 200
    client.force_login(world.dora)  # another hospital's doctor: still nothing to see
    assert client.get(report_url).status_code == 404
