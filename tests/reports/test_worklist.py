"""The worklist: one reporting state per study (decided in the database), filters and counts by
state, image type, doctor and date, the triage order, and a query count that does not grow."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_scopes import scopes_disabled

from apps.reports import services
from apps.reports.worklist import ReportingState, with_reporting_state
from apps.studies.models import Study, StudyStatus
from tests.factories import make_study

from .helpers import doctor_for, make_diagnosis, write_report

pytestmark = pytest.mark.django_db

URL = reverse("reports:worklist", args=["st-mary"])


def _set(study, **fields):
    with scopes_disabled():
        Study.objects.filter(pk=study.pk).update(**fields)


def _one_of_each(world):
    """Paul's studies, one in each reporting state."""
    s = {state: make_study(world.paul_record, world.alice) for state in ReportingState}
    _set(s[ReportingState.AWAITING_AI], status=StudyStatus.PROCESSING)
    for state in (ReportingState.NEEDS_REPORT, ReportingState.DRAFT, ReportingState.SIGNED, ReportingState.AMENDED):
        _set(s[state], status=StudyStatus.DONE)
    _set(s[ReportingState.REFUSED], status=StudyStatus.REFUSED)
    _set(s[ReportingState.FAILED], status=StudyStatus.FAILED)
    write_report(s[ReportingState.DRAFT], world.alice)
    write_report(s[ReportingState.SIGNED], world.alice, sign=True)
    signed = write_report(s[ReportingState.AMENDED], world.alice, sign=True)
    with scopes_disabled():
        v2 = services.amend_report(signed, world.alice, reason="Typo.")
        services.sign_report(v2, world.alice)
    _set(s[ReportingState.ENTERED_IN_ERROR], entered_in_error_at=timezone.now(), entered_in_error_reason="Wrong.")
    return s


def test_every_study_has_one_reporting_state(world):
    studies = _one_of_each(world)
    with scopes_disabled():
        states = dict(with_reporting_state(Study.objects.all()).values_list("pk", "reporting_state"))
    assert {state: states[study.pk] for state, study in studies.items()} == {s: s.value for s in ReportingState}


def test_a_signed_study_with_an_amendment_in_progress_is_a_draft(world):
    study = make_study(world.paul_record, world.alice)
    signed = write_report(study, world.alice, sign=True)
    with scopes_disabled():
        services.amend_report(signed, world.alice, reason="Second look.")
        [state] = with_reporting_state(Study.objects.filter(pk=study.pk)).values_list("reporting_state", flat=True)
    assert state == ReportingState.DRAFT


def _rows(html: str) -> list[tuple[int, str]]:
    return [(int(pk), state) for pk, state in re.findall(r'data-study="(\d+)" data-reporting-state="(\w+)"', html)]


def _count(html: str, state: str) -> int:
    return int(re.search(rf'data-count="{state}">(\d+)<', html).group(1))


def test_the_worklist_shows_counts_and_filters_by_state(client, world):
    studies = _one_of_each(world)
    client.force_login(world.alice)
    html = client.get(URL).content.decode()
    for state in ReportingState:
        assert _count(html, state.value) == 1, state
    listed = dict(_rows(html))
    # Entered in error leaves the worklist; every other state is listed, with its label.
    assert studies[ReportingState.ENTERED_IN_ERROR].pk not in listed
    assert len(listed) == len(ReportingState) - 1
    assert "AI ready – needs report" in html and "Not read by the AI – needs report" in html

    for state in ReportingState:
        rows = _rows(client.get(URL, {"state": state.value}).content.decode())
        assert rows == [(studies[state].pk, state.value)], state


def test_filters_by_image_type_date_and_doctor(client, world):
    chest = make_study(world.paul_record, world.alice)
    brain = make_study(world.paul_record, world.alice)
    _set(chest, modality="chest_xray")
    _set(brain, modality="brain_mri", created_at=timezone.now() - dt.timedelta(days=10))
    olga_doctor = doctor_for(world.other_a)
    with scopes_disabled():
        from apps.studies.services import assign_doctor

        assign_doctor(world.other_a, world.alice)  # Alice cares for Olga too, with her own doctor
    olga = make_study(world.other_a, olga_doctor)
    client.force_login(world.alice)
    pks = lambda **q: {pk for pk, _ in _rows(client.get(URL, q).content.decode())}  # noqa: E731
    assert pks() == {chest.pk, brain.pk, olga.pk}
    assert pks(modality="brain_mri") == {brain.pk}
    today = timezone.localdate()
    assert pks(uploaded_from=str(today - dt.timedelta(days=1))) == {chest.pk, olga.pk}
    assert pks(uploaded_to=str(today - dt.timedelta(days=5))) == {brain.pk}
    assert pks(doctor=str(olga_doctor.pk)) == {olga.pk}  # the studies of that doctor's patients


def test_bad_filters_are_named_in_an_error_summary_not_a_500(client, world):
    make_study(world.paul_record, world.alice)
    client.force_login(world.alice)
    response = client.get(URL, {"uploaded_from": "2026-12-10", "uploaded_to": "2026-12-01", "state": "nonsense"})
    assert response.status_code == 400
    html = response.content.decode()
    summary = re.search(r'<div class="error-summary".*?</div>', html, re.S).group(0)
    assert 'href="#id_uploaded_to"' in summary and "Uploaded to: it must be on or after" in summary
    assert 'href="#id_state"' in summary and "Reporting state: select a valid choice." in summary


def test_triage_puts_ai_suspected_findings_first_and_says_it_is_an_aid(client, world):
    normal, finding, unsure, none_yet = (make_study(world.paul_record, world.alice) for _ in range(4))
    make_diagnosis(finding)  # viral pneumonia
    make_diagnosis(unsure, indeterminate=True)
    make_diagnosis(normal)
    with scopes_disabled():
        normal.diagnoses.update(label="normal")
    client.force_login(world.alice)
    html = client.get(URL, {"sort": "triage"}).content.decode()
    assert [pk for pk, _ in _rows(html)] == [finding.pk, unsure.pk, normal.pk, none_yet.pk]
    assert "Triage aid:" in html and "The AI can miss findings" in html


def test_other_doctors_and_hospitals_see_none_of_it(client, world):
    make_study(world.paul_record, world.alice)
    for user in (world.bob, world.dora):
        client.force_login(user)
        response = client.get(URL) if user == world.bob else client.get(reverse("reports:worklist", args=["riverside"]))
        assert response.status_code == 200 and _rows(response.content.decode()) == []


def _queries(client, params=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(URL, params or {}).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("params", [{}, {"sort": "triage", "modality": "chest_xray"}])
def test_the_worklist_costs_the_same_queries_for_2_or_40_studies(client, world, params):
    for _ in range(2):
        study = make_study(world.paul_record, world.alice)
        _set(study, modality="chest_xray")
        make_diagnosis(study)
    client.force_login(world.alice)
    _queries(client, params)  # warm-up (session, per-process caches)
    few = _queries(client, params)
    for _ in range(38):
        study = make_study(world.paul_record, world.alice)
        _set(study, modality="chest_xray")
        make_diagnosis(study)
        write_report(study, world.alice)
    assert _queries(client, params) == few
    assert few <= 10, f"{few} queries"  # 3 for the page itself: count, rows, counts per state
