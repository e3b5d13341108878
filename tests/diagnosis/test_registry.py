"""The model registry: registering artifacts from disk, activation, and the A/B arm of a study."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError

from apps.diagnosis import registry
from apps.diagnosis.apps import register_shipped_models
from apps.diagnosis.models import ModelVersion

from .helpers import CHEST_LABELS, fake_version, write_fake_artifact


@pytest.fixture
def weights_dir(settings, tmp_path, db):
    """An empty MODEL_WEIGHTS_DIR and an empty registry."""
    root = tmp_path / "weights"
    root.mkdir()
    settings.MODEL_WEIGHTS_DIR = root
    ModelVersion.objects.all().delete()
    return root


def test_sync_registers_artifacts_from_their_cards(weights_dir):
    write_fake_artifact(weights_dir, "router", "v1")
    chest = write_fake_artifact(weights_dir, "chest", "v1")
    write_fake_artifact(weights_dir, "brain", "v1", card={"temperature": 0.8})

    created = registry.sync_shipped_models()

    assert sorted(mv.task for mv in created) == ["brain", "chest", "router"]
    mv = ModelVersion.objects.get(task="chest", version="v1")
    assert mv.weights_sha256 == hashlib.sha256((chest / "model.safetensors").read_bytes()).hexdigest()
    assert mv.artifact_path == "chest/v1"
    assert mv.artifact_dir == chest
    assert mv.labels == CHEST_LABELS
    assert mv.thresholds == {"min_confidence": 0.6}
    assert mv.temperature == pytest.approx(1.3)
    assert mv.metrics == {"accuracy": 0.95, "macro_f1": 0.94}
    assert mv.accuracy == pytest.approx(0.95)
    assert ModelVersion.objects.get(task="brain").temperature == pytest.approx(0.8)
    # every task now has exactly one active version
    assert set(ModelVersion.objects.filter(is_active=True).values_list("task", flat=True)) == {
        "router",
        "chest",
        "brain",
    }


def test_sync_is_idempotent_and_activates_the_newest_only_when_none_is_active(weights_dir):
    write_fake_artifact(weights_dir, "chest", "v2")
    write_fake_artifact(weights_dir, "chest", "v10")
    registry.sync_shipped_models()
    assert ModelVersion.objects.get(task="chest", is_active=True).version == "v10"  # natural order, not "v2" > "v10"

    assert registry.sync_shipped_models() == []
    assert ModelVersion.objects.filter(task="chest").count() == 2

    # A newer artifact is registered but does not displace the active version.
    write_fake_artifact(weights_dir, "chest", "v11")
    created = registry.sync_shipped_models()
    assert [mv.version for mv in created] == ["v11"]
    assert ModelVersion.objects.get(task="chest", is_active=True).version == "v10"


def test_sync_skips_incomplete_or_unknown_artifacts(weights_dir):
    folder = write_fake_artifact(weights_dir, "chest", "v1")
    (folder / "model.safetensors").unlink()  # a card without weights is not an artifact
    odd = weights_dir / "knee" / "v1"
    odd.mkdir(parents=True)
    (odd / "model.safetensors").write_bytes(b"x")
    (odd / "card.json").write_text('{"task": "knee", "version": "v1"}')
    broken = weights_dir / "brain" / "v1"
    broken.mkdir(parents=True)
    (broken / "model.safetensors").write_bytes(b"x")
    (broken / "card.json").write_text("{not json")

    assert registry.sync_shipped_models() == []
    assert not ModelVersion.objects.exists()


def test_sync_refuses_weights_that_do_not_match_their_card(weights_dir):
    folder = write_fake_artifact(weights_dir, "chest", "v1", card={"weights_sha256": "0" * 64})
    assert registry.sync_shipped_models() == []
    with pytest.raises(ValueError, match="does not match its card"):
        registry.register_artifact(folder)
    good = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    write_fake_artifact(weights_dir, "chest", "v1", card={"weights_sha256": good})
    assert [mv.version for mv in registry.sync_shipped_models()] == ["v1"]


def test_sync_keeps_the_registered_hash_when_weights_change_under_the_same_version(weights_dir, caplog):
    folder = write_fake_artifact(weights_dir, "router", "v1")
    registry.sync_shipped_models()
    before = ModelVersion.objects.get(task="router").weights_sha256
    (folder / "model.safetensors").write_bytes(b"different weights")
    registry.sync_shipped_models()
    assert ModelVersion.objects.get(task="router").weights_sha256 == before
    assert "keeping the registered one" in caplog.text


def test_post_migrate_handler_registers_shipped_weights(weights_dir):
    write_fake_artifact(weights_dir, "router", "v1")
    register_shipped_models(sender=apps.get_app_config("diagnosis"), using="default", verbosity=0)
    assert ModelVersion.objects.filter(task="router", version="v1", is_active=True).exists()


def test_registry_import_does_not_load_torch():
    """``migrate`` runs the registry; it must stay fast, so it must not import torch."""
    code = (
        "import sys, django; django.setup(); "
        "from apps.diagnosis import registry, apps as a, models, services, tasks; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    env_root = Path(django_settings.BASE_DIR)
    proc = subprocess.run([sys.executable, "-c", code], cwd=env_root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_activate_version_swaps_the_active_one(weights_dir):
    old = fake_version("chest", "a", is_active=True)
    new = fake_version("chest", "b", rollout_percent=20)
    registry.activate_version(new)
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.is_active, new.is_active, new.rollout_percent) == (False, True, 0)


# --- A/B rollout -----------------------------------------------------------------------------------


def test_choose_version_is_the_active_one_without_rollout(weights_dir):
    active = fake_version("chest", "a", is_active=True)
    fake_version("chest", "b")  # inactive, rollout 0: never chosen
    assert {registry.choose_version("chest", sid).pk for sid in range(200)} == {active.pk}


def test_ab_arm_is_deterministic_per_study_and_splits_by_rollout(weights_dir):
    active = fake_version("chest", "a", is_active=True)
    challenger = fake_version("chest", "b", rollout_percent=30)
    fake_version("chest", "c")  # no rollout: never chosen
    versions = list(ModelVersion.objects.filter(task="chest"))

    # the database path agrees with the pure decision, and repeats itself
    for sid in range(1, 101):
        chosen = registry.choose_version("chest", sid)
        assert chosen == registry.choose_version("chest", sid) == registry.assign_arm(versions, "chest", sid)

    arms = Counter(registry.assign_arm(versions, "chest", sid).pk for sid in range(1, 20001))
    assert set(arms) == {active.pk, challenger.pk}
    assert 0.28 <= arms[challenger.pk] / 20000 <= 0.32, arms


def test_ab_arms_of_different_tasks_are_independent(weights_dir):
    chest = [fake_version("chest", "a", is_active=True), fake_version("chest", "b", rollout_percent=50)]
    brain = [fake_version("brain", "a", is_active=True), fake_version("brain", "b", rollout_percent=50)]
    pairs = Counter(
        (registry.assign_arm(chest, "chest", sid).version, registry.assign_arm(brain, "brain", sid).version)
        for sid in range(8000)
    )
    assert len(pairs) == 4 and all(1700 <= n <= 2300 for n in pairs.values()), pairs


def test_several_challengers_share_the_buckets(weights_dir):
    versions = [
        fake_version("router", "a", is_active=True),
        fake_version("router", "b", rollout_percent=10),
        fake_version("router", "c", rollout_percent=20),
    ]
    counts = Counter(registry.assign_arm(versions, "router", sid).version for sid in range(20000))
    assert 0.09 <= counts["b"] / 20000 <= 0.11
    assert 0.19 <= counts["c"] / 20000 <= 0.21
    assert 0.68 <= counts["a"] / 20000 <= 0.72


def test_no_active_version_raises(weights_dir):
    with pytest.raises(registry.ModelNotAvailable):
        registry.choose_version("brain", 1)


def test_choose_versions_registers_shipped_weights_when_the_registry_is_empty(weights_dir):
    for task in ("router", "chest", "brain"):
        write_fake_artifact(weights_dir, task, "v1")
    chosen = registry.choose_versions(7)
    assert {task: mv.version for task, mv in chosen.items()} == {"router": "v1", "chest": "v1", "brain": "v1"}


def test_rollouts_of_a_task_cannot_exceed_100_percent(weights_dir):
    fake_version("chest", "a", is_active=True)
    fake_version("chest", "b", rollout_percent=60)
    c = fake_version("chest", "c")
    c.rollout_percent = 50
    with pytest.raises(ValidationError):
        c.full_clean()
    c.rollout_percent = 40
    c.full_clean()
