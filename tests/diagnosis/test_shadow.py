"""Shadow mode and the promotion flow: a candidate version reads every study silently, is
compared with the live version where a doctor gave a label, then takes an A/B share, becomes
active in one hospital, and can be rolled back; each step leaves history and an audit event."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django_scopes import scopes_disabled

from apps.accounts.models import AuditEvent
from apps.accounts.tenancy import tenant_scope
from apps.diagnosis import deployments, engine, performance, registry, services
from apps.diagnosis.models import DeploymentChange, DeploymentStage, ModelDeployment, ShadowResult
from apps.studies.models import StudyStatus
from tests.factories import make_study

from .conftest import FakePipeline, FakeResult
from .helpers import CHEST_LABELS, fake_version, read_now
from .traffic import confident


@pytest.fixture
def candidate(fake_models):
    """chest "v2", registered but not active (the fake registry's active chest version is "v1")."""
    with scopes_disabled():
        return fake_version("chest", "v2")


@pytest.fixture
def pipelines(monkeypatch, fake_models):
    """A fake pipeline per chest version: v1 (live) reads viral pneumonia, v2 reads normal."""
    built: dict[str, FakePipeline] = {}

    def get_pipeline(router_mv, specialist_mvs):
        version = specialist_mvs["chest"].version
        if version not in built:
            built[version] = FakePipeline()
            label = "viral_pneumonia" if version == "v1" else "normal"
            built[version].result = FakeResult(
                label=label, probabilities=confident(CHEST_LABELS, label, 0.8), bit_depth=12
            )
        return built[version]

    monkeypatch.setattr(engine, "get_pipeline", get_pipeline)
    return built


def _shadow(world, candidate):
    with scopes_disabled():
        return deployments.start_shadow(world.a, candidate, world.carol, note="try the retrain")


def test_a_shadow_version_reads_every_study_but_nobody_sees_it(world, client, candidate, pipelines):
    _shadow(world, candidate)
    study = make_study(world.paul_record, world.alice)

    diagnosis = read_now(study)

    assert diagnosis.specialist_version.version == "v1" and diagnosis.label == "viral_pneumonia"
    assert diagnosis.bit_depth == 12
    with scopes_disabled():
        [shadow] = ShadowResult.objects.filter(diagnosis=diagnosis)
    assert (shadow.model_version, shadow.label, shadow.hospital_id) == (candidate, "normal", world.a.pk)
    assert pipelines["v1"].runs == 1 and pipelines["v2"].runs == 1

    # Nothing a doctor or patient reads names the shadow version or its result.
    client.force_login(world.alice)
    page = client.get(reverse("studies:study_detail", args=["st-mary", study.pk])).content.decode()
    status = client.get(reverse("diagnosis:study_status", args=["st-mary", study.pk])).json()
    # As a word: a random CSRF token on the page may contain the letters "v2".
    shadow_name = re.compile(r"\bv2\b")
    assert not shadow_name.search(page) and not shadow_name.search(json.dumps(status))
    assert status["diagnosis"]["label"] == "viral_pneumonia"
    with scopes_disabled():
        study.refresh_from_db()
    assert "Normal" not in study.status_message


def test_a_failing_shadow_read_never_touches_the_live_read(world, candidate, pipelines):
    _shadow(world, candidate)
    study = make_study(world.paul_record, world.alice)
    engine.get_pipeline(fake_version("router", "v1"), {"chest": candidate}).error = RuntimeError("GPU on fire")

    diagnosis = read_now(study)

    assert diagnosis is not None and diagnosis.label == "viral_pneumonia"
    with scopes_disabled():
        study.refresh_from_db()
        assert not ShadowResult.objects.exists()
    assert study.status == StudyStatus.DONE


def test_shadows_stay_in_their_hospital_and_task(world, fake_models, candidate, pipelines):
    _shadow(world, candidate)
    with scopes_disabled():
        brain_candidate = fake_version("brain", "v2")
        deployments.start_shadow(world.a, brain_candidate, world.carol)
    read_now(make_study(world.bea_record, world.dora))  # hospital B: no shadow
    read_now(make_study(world.paul_record, world.alice))  # a chest study in A
    with scopes_disabled():
        assert list(ShadowResult.objects.values_list("hospital_id", "model_version__task")) == [(world.a.pk, "chest")]


def test_promotion_shadow_then_ab_then_active_then_rollback(world, fake_models, candidate):
    live = fake_models["chest"]
    with scopes_disabled():
        deployments.start_shadow(world.a, candidate, world.carol)
        with tenant_scope(world.a.pk):
            assert {registry.choose_version("chest", sid, world.a.pk) for sid in range(300)} == {live}

        deployments.set_ab_share(world.a, candidate, 30, world.carol)
        with tenant_scope(world.a.pk):
            arms = Counter(registry.choose_version("chest", sid, world.a.pk).version for sid in range(1, 3001))
            assert registry.choose_version("chest", 7, world.a.pk) == registry.choose_version("chest", 7, world.a.pk)
        assert 0.26 < arms["v2"] / 3000 < 0.34
        with tenant_scope(world.b.pk):  # another hospital keeps the platform's version
            assert {registry.choose_version("chest", sid, world.b.pk) for sid in range(300)} == {live}

        deployments.make_active(world.a, candidate, world.carol, note="better on our patients")
        with tenant_scope(world.a.pk):
            assert {registry.choose_version("chest", sid, world.a.pk) for sid in range(300)} == {candidate}
            assert deployments.live_version(world.a, "chest") == candidate

        deployments.roll_back(world.a, candidate, world.carol, note="too many indeterminate reads")
        with tenant_scope(world.a.pk):
            assert {registry.choose_version("chest", sid, world.a.pk) for sid in range(300)} == {live}
        assert not ModelDeployment.objects.exists()

        history = list(
            DeploymentChange.objects.order_by("pk").values_list("from_stage", "to_stage", "to_percent", "actor")
        )
        assert history == [
            ("", "shadow", 0, world.carol.pk),
            ("shadow", "ab", 30, world.carol.pk),
            ("ab", "active", 0, world.carol.pk),
            ("active", "", 0, world.carol.pk),
        ]
        events = AuditEvent.objects.filter(action="model.deployment_change", hospital=world.a).order_by("pk")
        assert [(e.detail["from_stage"], e.detail["to_stage"]) for e in events] == [
            ("", "shadow"),
            ("shadow", "ab"),
            ("ab", "active"),
            ("active", ""),
        ]
        assert all(e.actor == world.carol and e.detail["version"] == "v2" for e in events)


def test_steps_out_of_order_are_refused_with_a_reason(world, fake_models, candidate):
    with scopes_disabled():
        with pytest.raises(ValidationError, match="already reads"):
            deployments.start_shadow(world.a, fake_models["chest"], world.carol)
        deployments.start_shadow(world.a, candidate, world.carol)
        with pytest.raises(ValidationError, match="give it an A/B share first"):
            deployments.make_active(world.a, candidate, world.carol)
        with pytest.raises(ValidationError, match="already in shadow"):
            deployments.start_shadow(world.a, fake_version("chest", "v3"), world.carol)
        with pytest.raises(ValidationError, match="from 1 to 100"):
            deployments.set_ab_share(world.a, candidate, 0, world.carol)
        deployments.set_ab_share(world.a, candidate, 80, world.carol)
        third = fake_version("chest", "v3")
        deployments.start_shadow(world.a, third, world.carol)
        with pytest.raises(ValidationError, match="at most 20%"):
            deployments.set_ab_share(world.a, third, 30, world.carol)
        with pytest.raises(ValidationError, match="not deployed"):
            deployments.roll_back(world.b, candidate, world.carol)
        assert DeploymentChange.objects.count() == 3  # refused steps leave no history


def test_the_summary_pairs_shadow_and_live_reads_on_labelled_studies(world, candidate, pipelines):
    _shadow(world, candidate)
    first = read_now(make_study(world.paul_record, world.alice))
    second = read_now(make_study(world.paul_record, world.alice))
    read_now(make_study(world.paul_record, world.alice))  # not reviewed
    with scopes_disabled():
        services.correct_diagnosis(first, world.alice, "normal")  # the shadow was right
        services.confirm_diagnosis(second, world.alice)  # the live read was right
    performance.summarize_hospital(world.a.pk)
    with tenant_scope(world.a.pk):
        summaries = {(s.model_version.version, s.arm): s for s in performance.version_summaries(world.a.pk)}
    shadow = summaries[("v2", "shadow")]
    assert shadow.reads == 3 and shadow.reviewed == 2
    assert shadow.paired == {"shadow_only": 1, "live_only": 1}
    assert summaries[("v1", "live")].agreement.successes == 1


# --- the pages ------------------------------------------------------------------------------


def _action_url(mv, action):
    return reverse("diagnosis:deployment_action", args=["st-mary", mv.pk, action])


def test_an_admin_confirms_each_step_on_the_models_page(world, client, candidate):
    client.force_login(world.carol)
    page = client.get(reverse("diagnosis:models", args=["st-mary"])).content.decode()
    assert _action_url(candidate, "shadow") in page

    confirm = client.get(_action_url(candidate, "shadow"))
    assert confirm.status_code == 200 and b"doctors and patients never see them" in confirm.content

    unconfirmed = client.post(_action_url(candidate, "shadow"), {"note": "x"})
    assert unconfirmed.status_code == 400
    with scopes_disabled():
        assert not ModelDeployment.objects.exists()

    done = client.post(_action_url(candidate, "shadow"), {"confirm": "on", "note": "retrained on our cases"})
    assert done.status_code == 302
    too_early = client.post(_action_url(candidate, "activate"), {"confirm": "on"})
    assert too_early.status_code == 400 and b"give it an A/B share first" in too_early.content
    bad_share = client.post(_action_url(candidate, "ab"), {"confirm": "on", "percent": "150"})
    assert bad_share.status_code == 400
    assert client.post(_action_url(candidate, "ab"), {"confirm": "on", "percent": "25"}).status_code == 302
    with scopes_disabled():
        deployment = ModelDeployment.objects.get()
    assert (deployment.stage, deployment.rollout_percent) == (DeploymentStage.AB, 25)

    page = client.get(reverse("diagnosis:models", args=["st-mary"])).content.decode()
    assert "retrained on our cases" in page  # the history
    assert _action_url(candidate, "rollback") in page and _action_url(candidate, "activate") in page


def test_doctors_read_the_models_page_without_actions(world, client, candidate):
    _shadow(world, candidate)
    client.force_login(world.alice)
    page = client.get(reverse("diagnosis:models", args=["st-mary"]))
    assert page.status_code == 200
    assert b"Read-only" in page.content
    assert b"/models/versions/" not in page.content
    assert client.post(_action_url(candidate, "rollback"), {"confirm": "on"}).status_code == 403
