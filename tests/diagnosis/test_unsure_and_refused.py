"""Indeterminate ("AI unsure") and refused ("Not read by the AI") reads, end to end on the
diagnosis side: the wording, the study page and its status pill, the study lists, status.json,
the REST API, the doctors' notifications and the live status event, and what feedback they allow.

Reads go through ``services.run_diagnosis`` with the fake pipeline (a real ``PipelineResult``),
so the study's status, message and notifications are the ones production would produce."""

from __future__ import annotations

import json
import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.chat.models import Notification, NotificationKind
from apps.chat.receivers import study_status_event
from apps.diagnosis import services
from apps.diagnosis.models import Diagnosis, FeedbackAction, candidates_phrase, indeterminate_display
from apps.studies.models import Study, StudyStatus
from tests.auth import APIClient
from tests.factories import make_study

from .conftest import INDETERMINATE, FakeResult
from .helpers import read_now

pytestmark = pytest.mark.django_db

UNSURE_WORDING = "Indeterminate: bacterial or viral pneumonia"
CT_REASON = "This looks like a CT slice, not a chest X-ray or brain MRI, so no AI read was made."
OOD_REASON = "This looks like a brain image, but unlike the MRIs the model was trained on, so no AI read was made."
CT_REFUSAL = FakeResult(
    route="unsupported",
    route_probabilities={"chest_xray": 0.05, "brain_mri": 0.05, "unsupported": 0.9},
    refused=True,
    refusal_code="other_modality",
    refusal_reason=CT_REASON,
    task=None,
    label=None,
    probabilities={},
    overlay_png=None,
    heatmap_png=None,
    roi_box=None,
)


def _read(world, fake_pipeline, result, django_capture_on_commit_callbacks) -> tuple[Study, Diagnosis]:
    """Upload a study of Paul and run the AI read to ``result``, with the on-commit side effects
    (status push, notifications)."""
    fake_pipeline.result = result
    study = make_study(world.paul_record, world.alice)
    with django_capture_on_commit_callbacks(execute=True):
        diagnosis = read_now(study)
    with scopes_disabled():
        return Study.objects.get(pk=study.pk), diagnosis


def _page(client, user, name, **kwargs) -> str:
    client.force_login(user)
    response = client.get(reverse(name, kwargs={"hospital_slug": "st-mary", **kwargs}))
    assert response.status_code == 200
    return response.content.decode()


def _headline(html: str) -> str:
    """The AI result line of the study page: the label and whatever follows it in its <dd>."""
    match = re.search(r'<strong class="ai-label">(.*?)</dd>', html, re.S)
    assert match, "no AI result headline on the page"
    return re.sub(r"<[^>]+>", "", match.group(1)).strip()


def _pill(html: str, study: Study) -> tuple[str, str]:
    """(class, text) of the study's status pill."""
    match = re.search(rf'<span class="status ([^"]+)" data-study-status="{study.pk}">([^<]*)</span>', html)
    assert match, "no status pill for the study"
    return match.group(1), match.group(2)


# --- The wording ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidates", "conjunction", "expected"),
    [
        (["bacterial_pneumonia", "viral_pneumonia"], "or", "bacterial or viral pneumonia"),
        (["viral_pneumonia", "bacterial_pneumonia"], "or", "viral or bacterial pneumonia"),
        (["bacterial_pneumonia", "viral_pneumonia"], "and", "bacterial and viral pneumonia"),
        (["normal", "bacterial_pneumonia"], "or", "normal or bacterial pneumonia"),
        (["glioma", "meningioma", "pituitary"], "or", "glioma, meningioma or pituitary tumour"),
        (["no_tumor", "pituitary"], "or", "no tumour or pituitary tumour"),  # never a bare "no or …"
        (["normal", "bacterial_pneumonia", "viral_pneumonia"], "or", "normal, bacterial pneumonia or viral pneumonia"),
        (["glioma"], "or", "glioma"),
        ([], "or", ""),
    ],
)
def test_candidates_phrase(candidates, conjunction, expected):
    assert candidates_phrase(candidates, conjunction) == expected


def test_indeterminate_display():
    assert indeterminate_display(["bacterial_pneumonia", "viral_pneumonia"]) == UNSURE_WORDING
    assert indeterminate_display(["normal", "bacterial_pneumonia"]) == "Indeterminate: normal or bacterial pneumonia"
    assert indeterminate_display([]) == "Indeterminate"


# --- The study page -------------------------------------------------------------------------


def test_study_page_shows_an_unsure_read_without_a_percentage(
    world, client, fake_pipeline, django_capture_on_commit_callbacks
):
    study, diagnosis = _read(world, fake_pipeline, INDETERMINATE, django_capture_on_commit_callbacks)
    html = _page(client, world.alice, "studies:study_detail", pk=study.pk)

    assert _headline(html) == UNSURE_WORDING  # the wording, and no "— 49%" after it
    assert "%" not in _headline(html)
    assert "The AI could not decide between bacterial and viral pneumonia" in html
    assert "Bacterial pneumonia</strong>" not in html  # the top class is never the headline
    # The bars stay, but none of them is highlighted as the AI's pick.
    assert 'class="prob-bar top"' not in html and html.count('class="candidate"') == 2
    # The pill: a distinct "AI unsure" state, not the green "AI read ready".
    assert _pill(html, study) == ("status-unsure", "AI unsure")
    assert "AI read ready" not in html and "status-done" not in html
    assert "AI second read ready: indeterminate — bacterial or viral pneumonia" in html
    # The heatmap has its colour scale, and no word about a box (the map is not focal).
    assert "Heatmap colours:" in html and "more influence on the AI label" in html and ">less<" in html
    assert "linear-gradient" not in html  # the scale's colours live in the stylesheet
    assert "region of interest" not in html.lower() and " box" not in html.lower()


def test_study_page_of_a_confident_read_keeps_its_percentage_and_legend(
    world, client, fake_pipeline, django_capture_on_commit_callbacks
):
    study, _ = _read(world, fake_pipeline, FakeResult(), django_capture_on_commit_callbacks)
    html = _page(client, world.alice, "studies:study_detail", pk=study.pk)
    assert _headline(html) == "Viral pneumonia — 70%"
    assert _pill(html, study) == ("status-done", "AI read ready")
    assert "more influence on the AI label" in html
    assert "AI unsure" not in html and "Indeterminate" not in html


@pytest.mark.parametrize(
    ("result", "reason", "code_display"),
    [
        (CT_REFUSAL, CT_REASON, "Not a chest X-ray or brain MRI"),
        (
            FakeResult(
                route="brain_mri",
                refused=True,
                refusal_code="unlike_training",
                refusal_reason=OOD_REASON,
                task="brain",
                overlay_png=None,
                heatmap_png=None,
                roi_box=None,
            ),
            OOD_REASON,
            "Unlike the images the model was trained on",
        ),
    ],
    ids=["other_modality", "unlike_training"],
)
def test_a_refused_study_is_never_shown_as_ready(
    world, client, fake_pipeline, django_capture_on_commit_callbacks, result, reason, code_display
):
    study, diagnosis = _read(world, fake_pipeline, result, django_capture_on_commit_callbacks)
    assert study.status == StudyStatus.REFUSED and diagnosis.refused

    html = _page(client, world.alice, "studies:study_detail", pk=study.pk)
    assert _pill(html, study) == ("status-refused", "Not read by the AI")
    assert "AI read ready" not in html and "status-done" not in html
    assert reason in html  # the pipeline's words, on the result card
    assert f"Not read by the AI: {reason[0].lower()}{reason[1:].rstrip('.')}" in html  # the status message
    assert f'data-refusal-code="{result.refusal_code}"' in html and f"Reason: {code_display}" in html
    assert "ai-label" not in html and "prob-bar" not in html
    assert '{"heatmapUrl": "", "roi": null}' in html  # the viewer has no heatmap layer to offer

    # The lists of studies say the same.
    for name, kwargs in (("studies:patient_detail", {"pk": world.paul_record.pk}), ("studies:caseload", {})):
        listing = _page(client, world.alice, name, **kwargs)
        assert _pill(listing, study) == ("status-refused", "Not read by the AI"), name
        assert "AI read ready" not in listing, name


def test_patient_page_lists_an_unsure_study_as_unsure(world, client, fake_pipeline, django_capture_on_commit_callbacks):
    study, _ = _read(world, fake_pipeline, INDETERMINATE, django_capture_on_commit_callbacks)
    html = _page(client, world.alice, "studies:patient_detail", pk=world.paul_record.pk)
    assert _pill(html, study) == ("status-unsure", "AI unsure")
    assert "AI read ready" not in html


# --- status.json and the REST API -----------------------------------------------------------


def _status_and_api(world, client, study):
    """Alice's view of ``study``: status.json, an API client logged in as her, and the API detail."""
    client.force_login(world.alice)
    payload = json.loads(
        client.get(reverse("diagnosis:study_status", kwargs={"hospital_slug": "st-mary", "study_pk": study.pk})).content
    )
    api = APIClient()
    api.force_login(world.alice, backend="django.contrib.auth.backends.ModelBackend")
    detail = api.get(reverse("api:study-detail", kwargs={"hospital_slug": "st-mary", "pk": study.pk})).json()
    return payload, api, detail


def test_status_json_and_api_of_an_unsure_read(world, client, fake_pipeline, django_capture_on_commit_callbacks):
    study, _ = _read(world, fake_pipeline, INDETERMINATE, django_capture_on_commit_callbacks)
    payload, api, detail = _status_and_api(world, client, study)
    listed = api.get(reverse("api:study-list", kwargs={"hospital_slug": "st-mary"})).json()["results"][0]

    assert payload["status"] == detail["status"] == "unsure"
    assert payload["status_display"] == detail["status_display"] == "AI unsure"
    assert payload["finished"] is True
    for summary in (payload["diagnosis"], detail["diagnosis"], listed["diagnosis"]):
        assert summary["label_display"] == UNSURE_WORDING
        assert summary["confidence"] is None
        assert summary["indeterminate"] is True
        assert summary["candidates"] == ["bacterial_pneumonia", "viral_pneumonia"]
        assert summary["refused"] is False and summary["refusal_code"] is None
        assert summary["label"] == "bacterial_pneumonia"  # the top class, for the record
        assert summary["roi_box"] is None and summary["has_overlay"] is True
    assert "%" not in detail["status_message"]


def test_status_json_and_api_of_a_refused_read(world, client, fake_pipeline, django_capture_on_commit_callbacks):
    study, _ = _read(world, fake_pipeline, CT_REFUSAL, django_capture_on_commit_callbacks)
    payload, api, detail = _status_and_api(world, client, study)
    filtered = api.get(reverse("api:study-list", kwargs={"hospital_slug": "st-mary"}), {"status": "refused"}).json()

    assert payload["status"] == detail["status"] == "refused"
    assert payload["status_display"] == detail["status_display"] == "Not read by the AI"
    assert filtered["count"] == 1
    for summary in (payload["diagnosis"], detail["diagnosis"]):
        assert summary["refused"] is True
        assert summary["refusal_code"] == "other_modality"
        assert summary["refusal_reason"] == CT_REASON
        assert summary["confidence"] is None and summary["indeterminate"] is False and summary["candidates"] == []
    assert detail["status_message"].startswith("Not read by the AI: this looks like a CT slice")


def test_api_of_a_confident_read_has_its_confidence(world, fake_pipeline, django_capture_on_commit_callbacks):
    study, _ = _read(world, fake_pipeline, FakeResult(), django_capture_on_commit_callbacks)
    api = APIClient()
    api.force_login(world.alice, backend="django.contrib.auth.backends.ModelBackend")
    summary = api.get(reverse("api:study-detail", kwargs={"hospital_slug": "st-mary", "pk": study.pk})).json()[
        "diagnosis"
    ]
    assert summary["label_display"] == "Viral pneumonia" and summary["confidence"] == pytest.approx(0.7)
    assert summary["indeterminate"] is False and summary["candidates"] == [] and summary["refusal_code"] is None


# --- Notifications and the live status event --------------------------------------------------


def _notification(world, study) -> Notification:
    with scopes_disabled():
        return Notification.objects.get(user=world.alice, data__study_id=study.pk)


def test_notification_of_an_unsure_read(world, fake_pipeline, django_capture_on_commit_callbacks):
    study, _ = _read(world, fake_pipeline, INDETERMINATE, django_capture_on_commit_callbacks)
    note = _notification(world, study)
    assert note.title == "AI unsure for Paul Potter (A-0001)"
    assert note.body == "AI second read ready: indeterminate — bacterial or viral pneumonia"
    assert "%" not in note.title + note.body
    assert note.data == {"study_id": study.pk, "status": "unsure"}
    assert study_status_event(study.pk, study.status, study.status_message)["label"] == "AI unsure"


def test_notification_of_a_refused_read(world, fake_pipeline, django_capture_on_commit_callbacks):
    study, _ = _read(world, fake_pipeline, CT_REFUSAL, django_capture_on_commit_callbacks)
    note = _notification(world, study)
    assert note.title == "Not read by the AI for Paul Potter (A-0001)"
    assert "ready" not in note.title.lower()
    assert note.body == (
        "Not read by the AI: this looks like a CT slice, not a chest X-ray or brain MRI, so no AI read was made"
    )
    assert note.kind == NotificationKind.RESULT_READY  # a refusal is a result, not a failure
    event = study_status_event(study.pk, study.status, study.status_message)
    assert (event["status"], event["label"]) == ("refused", "Not read by the AI")


def test_notification_of_a_confident_read_keeps_its_percentage(
    world, fake_pipeline, django_capture_on_commit_callbacks
):
    study, _ = _read(world, fake_pipeline, FakeResult(), django_capture_on_commit_callbacks)
    note = _notification(world, study)
    assert note.title == "AI read ready for Paul Potter (A-0001)"
    assert note.body == "AI second read ready: Viral pneumonia (70%)"


# --- Feedback on an unsure read -------------------------------------------------------------


def test_an_unsure_read_cannot_be_confirmed_but_takes_the_doctors_label(
    world, fake_pipeline, django_capture_on_commit_callbacks
):
    _, diagnosis = _read(world, fake_pipeline, INDETERMINATE, django_capture_on_commit_callbacks)
    with scopes_disabled():
        with pytest.raises(ValidationError, match="could not decide between bacterial and viral pneumonia"):
            services.confirm_diagnosis(diagnosis, world.alice)
        assert not diagnosis.feedback.exists()
        # The doctor's label is theirs even when it is the AI's (hidden) top class.
        feedback = services.correct_diagnosis(diagnosis, world.alice, "bacterial_pneumonia", "Lobar.")
    assert feedback.action == FeedbackAction.CORRECT
    assert feedback.corrected_label == feedback.final_label == "bacterial_pneumonia"


# --- Studies refused before this change ---------------------------------------------------------


def test_migration_moves_earlier_refusals_out_of_done(world):
    """Before the ``refused`` status a refused study ended ``done`` with modality ``unsupported``."""
    from importlib import import_module

    from django.apps import apps as django_apps

    migration = import_module("apps.studies.migrations.0002_study_status_unsure_refused")
    refused, read = make_study(world.paul_record, world.alice), make_study(world.paul_record, world.alice)
    with scopes_disabled():
        Study.objects.filter(pk=refused.pk).update(status="done", modality="unsupported")
        Study.objects.filter(pk=read.pk).update(status="done", modality="chest_xray")
        migration.refused_reads_out_of_done(django_apps, None)
        assert Study.objects.get(pk=refused.pk).status == StudyStatus.REFUSED
        assert Study.objects.get(pk=read.pk).status == StudyStatus.DONE
        migration.refused_and_unsure_back_to_done(django_apps, None)
        assert Study.objects.get(pk=refused.pk).status == StudyStatus.DONE
