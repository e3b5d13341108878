"""The model registry: which trained artifacts exist, which one is active per task, and which
version reads a given study (A/B rollout).

An artifact is a folder holding ``model.safetensors`` and ``card.json`` (the model card the
training library writes). ``sync_shipped_models`` registers every artifact found under
``settings.MODEL_WEIGHTS_DIR``; it runs after every ``migrate`` (see ``apps.py``), so a fresh
checkout knows its shipped weights without a manual step. This module reads JSON and hashes
files only: it never imports torch, so ``migrate`` stays fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from .models import DeploymentStage, ModelDeployment, ModelVersion, Task

log = logging.getLogger(__name__)

CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"


class ModelNotAvailable(Exception):
    """No usable model version is registered for a task."""


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_artifacts(root: Path) -> list[Path]:
    """Artifact folders under ``root`` (any depth): those with both a card and weights."""
    if not root.is_dir():
        return []
    return sorted(card.parent for card in root.rglob(CARD_FILE) if (card.parent / WEIGHTS_FILE).is_file())


def _test_metrics(card: dict[str, Any]) -> dict[str, Any]:
    """The test-split metrics of a model card, wherever the card keeps them."""
    for key in ("test_metrics", "test"):
        if isinstance(card.get(key), dict):
            return card[key]
    metrics = card.get("metrics")
    if isinstance(metrics, dict):
        if isinstance(metrics.get("test"), dict):
            return metrics["test"]
        return metrics
    return {}


def _relative_to_weights_dir(path: Path) -> str:
    root = Path(settings.MODEL_WEIGHTS_DIR).resolve()
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:  # trained somewhere else: keep the absolute path
        return str(path.resolve())


def read_card(artifact_dir: Path) -> dict[str, Any]:
    with open(artifact_dir / CARD_FILE, encoding="utf-8") as fh:
        card = json.load(fh)
    if not isinstance(card, dict):
        raise ValueError(f"{artifact_dir / CARD_FILE} is not a JSON object")
    return card


def register_artifact(artifact_dir: Path | str, *, activate: bool = False) -> tuple[ModelVersion, bool]:
    """Register one artifact folder (idempotent). Returns ``(model_version, created)``.

    The task is the card's ``task`` (else the folder's parent name), the version the card's
    ``version`` (else the folder name). A version already registered is left as it is: a
    version's weights never change, so a different hash under the same name is reported, not
    silently swapped.
    """
    artifact_dir = Path(artifact_dir)
    card = read_card(artifact_dir)
    task = str(card.get("task") or artifact_dir.parent.name)
    if task not in Task.values:
        raise ValueError(f"{artifact_dir}: unknown task {task!r} (expected one of {', '.join(Task.values)})")
    version = str(card.get("version") or artifact_dir.name)
    sha = file_sha256(artifact_dir / WEIGHTS_FILE)
    recorded = card.get("weights_sha256")
    if recorded and recorded != sha:  # the card was written for other weights: refuse the pair
        raise ValueError(f"{artifact_dir}: weights SHA-256 {sha[:12]}… does not match its card ({str(recorded)[:12]}…)")
    with transaction.atomic():
        existing = ModelVersion.objects.filter(task=task, version=version).first()
        if existing is not None:
            if existing.weights_sha256 != sha:
                log.warning(
                    "Model %s %s is registered with weights %s but %s has %s; keeping the registered one.",
                    task,
                    version,
                    existing.short_sha,
                    artifact_dir,
                    sha[:12],
                )
            created, mv = False, existing
        else:
            mv = ModelVersion.objects.create(
                task=task,
                version=version,
                weights_sha256=sha,
                artifact_path=_relative_to_weights_dir(artifact_dir),
                labels=list(card.get("labels") or []),
                metrics=_test_metrics(card),
                thresholds=dict(card.get("thresholds") or {}),
                temperature=float(card.get("temperature") or 1.0),
                card=card,
            )
            created = True
            log.info("Registered model %s %s (%s)", task, version, mv.short_sha)
        if activate:
            activate_version(mv)
    return mv, created


def activate_version(mv: ModelVersion) -> None:
    """Make ``mv`` the active version of its task (the previous one becomes inactive)."""
    with transaction.atomic():
        ModelVersion.objects.filter(task=mv.task, is_active=True).exclude(pk=mv.pk).update(is_active=False)
        ModelVersion.objects.filter(pk=mv.pk).update(is_active=True, rollout_percent=0)
    mv.is_active, mv.rollout_percent = True, 0


def _natural_key(version: str) -> list[Any]:
    """'v10' sorts after 'v9'; dates and semantic versions sort as expected."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", version) if part]


def sync_shipped_models(weights_dir: Path | str | None = None) -> list[ModelVersion]:
    """Register every artifact under ``weights_dir`` (default ``MODEL_WEIGHTS_DIR``) that is
    not registered yet, then activate the newest version of each task that has none active.
    Returns the versions created. Safe to run any number of times."""
    root = Path(weights_dir or settings.MODEL_WEIGHTS_DIR)
    created: list[ModelVersion] = []
    for artifact_dir in find_artifacts(root):
        try:
            mv, was_created = register_artifact(artifact_dir)
        except (OSError, ValueError) as exc:
            log.warning("Skipping model artifact %s: %s", artifact_dir, exc)
            continue
        if was_created:
            created.append(mv)
    for task in Task.values:
        if ModelVersion.objects.filter(task=task, is_active=True).exists():
            continue
        versions = list(ModelVersion.objects.filter(task=task))
        if versions:
            newest = max(versions, key=lambda mv: (_natural_key(mv.version), mv.created_at, mv.pk))
            activate_version(newest)
            log.info("Activated model %s %s", task, newest.version)
    return created


def study_bucket(task: str, study_id: int) -> int:
    """A stable number in [0, 100) for (study, task): the study's A/B arm for that task."""
    digest = hashlib.sha256(f"{task}:{study_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100


def choose_version(task: str, study_id: int, hospital_id: int | None = None) -> ModelVersion:
    """The model version that reads ``study_id`` for ``task``.

    The active version, unless inactive versions of the task have a ``rollout_percent``: then
    each takes that share of studies, decided by ``study_bucket`` (the same study always gets
    the same version, and different tasks split independently).

    A hospital with its own A/B or active deployments of the task (``ModelDeployment``, see
    ``deployments.py``) uses those instead: its active version (else the platform's) and its
    A/B shares. Call inside the hospital's tenant scope.
    """
    if hospital_id is not None:
        own = list(
            ModelDeployment.objects.filter(
                hospital_id=hospital_id, task=task, stage__in=[DeploymentStage.AB, DeploymentStage.ACTIVE]
            ).select_related("model_version")
        )
        if own:
            active = next((d.model_version for d in own if d.stage == DeploymentStage.ACTIVE), None)
            if active is None:
                active = ModelVersion.objects.filter(task=task, is_active=True).first()
            challengers = [(d.model_version, d.rollout_percent) for d in own if d.stage == DeploymentStage.AB]
            return _split(active, challengers, task, study_id)
    versions = ModelVersion.objects.filter(task=task).filter(Q(is_active=True) | Q(rollout_percent__gt=0))
    return assign_arm(list(versions), task, study_id)


def assign_arm(versions: list[ModelVersion], task: str, study_id: int) -> ModelVersion:
    """The A/B decision of ``choose_version`` on already-fetched versions of one task."""
    active = next((mv for mv in versions if mv.is_active), None)
    challengers = [(mv, mv.rollout_percent) for mv in versions if not mv.is_active and mv.rollout_percent > 0]
    return _split(active, challengers, task, study_id)


def _split(
    active: ModelVersion | None, challengers: list[tuple[ModelVersion, int]], task: str, study_id: int
) -> ModelVersion:
    """Each challenger takes its percentage of the buckets (in registry order), the active version
    the rest."""
    if challengers:
        bucket = study_bucket(task, study_id)
        upper = 0
        for mv, percent in sorted(challengers, key=lambda c: c[0].pk):
            upper += percent
            if bucket < upper:
                return mv
    if active is None:
        raise ModelNotAvailable(task)
    return active


def choose_versions(study_id: int, hospital_id: int | None = None) -> dict[str, ModelVersion]:
    """The router and both specialists for one study (in ``hospital_id``'s deployments, when
    given); registers shipped weights on first need (a database migrated before the weights
    were added to the checkout)."""
    try:
        return {task: choose_version(task, study_id, hospital_id) for task in Task.values}
    except ModelNotAvailable:
        sync_shipped_models()
        return {task: choose_version(task, study_id, hospital_id) for task in Task.values}
