"""A hospital trying a new model version: shadow → A/B share → active, and rollback.

Each verb checks that the step is allowed, changes ``ModelDeployment`` in one transaction, adds
a ``DeploymentChange`` row (the history the admin shows) and an audit event. Only hospital
admins call them (the models dashboard asks for a confirmation first).

* ``start_shadow``: an inactive registered version reads every study of its task silently.
* ``set_ab_share``: a version in shadow (or already in A/B) gives the live read on a share of
  the hospital's studies of its task.
* ``make_active``: a version in A/B gives every live read of its task in this hospital; the
  version that was active here before (if the hospital had its own) is withdrawn.
* ``roll_back``: the version leaves the hospital at once (from any stage): its studies go back
  to the platform's active version. Its measured figures stay on the dashboard.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.http import HttpRequest

from apps.accounts import audit
from apps.accounts.models import Hospital

from .models import DeploymentChange, DeploymentStage, ModelDeployment, ModelVersion


def deployment_of(hospital: Hospital, mv: ModelVersion) -> ModelDeployment | None:
    return ModelDeployment.objects.filter(hospital=hospital, model_version=mv).first()


def live_version(hospital: Hospital, task: str) -> ModelVersion | None:
    """The version that reads the hospital's studies of ``task`` outside any A/B share."""
    own = (
        ModelDeployment.objects.filter(hospital=hospital, task=task, stage=DeploymentStage.ACTIVE)
        .select_related("model_version")
        .first()
    )
    return own.model_version if own else ModelVersion.objects.filter(task=task, is_active=True).first()


def _record(
    hospital: Hospital,
    mv: ModelVersion,
    actor: Any,
    before: ModelDeployment | None,
    after: ModelDeployment | None,
    note: str,
    request: HttpRequest | None,
) -> DeploymentChange:
    change = DeploymentChange.objects.create(
        hospital=hospital,
        model_version=mv,
        actor=actor,
        from_stage=before.stage if before else "",
        from_percent=before.rollout_percent if before else 0,
        to_stage=after.stage if after else "",
        to_percent=after.rollout_percent if after else 0,
        note=note[:500],
    )
    audit.record(
        "model.deployment_change",
        hospital=hospital,
        actor=actor,
        obj=mv,
        request=request,
        task=mv.task,
        version=mv.version,
        from_stage=change.from_stage,
        to_stage=change.to_stage,
        from_percent=change.from_percent,
        to_percent=change.to_percent,
        change=change.pk,
    )
    return change


def _snapshot(deployment: ModelDeployment | None) -> ModelDeployment | None:
    """A copy of the deployment as it is now (for the history), or None."""
    if deployment is None:
        return None
    return ModelDeployment(stage=deployment.stage, rollout_percent=deployment.rollout_percent)


def start_shadow(
    hospital: Hospital, mv: ModelVersion, actor: Any, *, note: str = "", request: HttpRequest | None = None
) -> ModelDeployment:
    """Put ``mv`` in shadow for ``hospital``: read every study of its task, shown to nobody."""
    with transaction.atomic():
        if deployment_of(hospital, mv) is not None:
            raise ValidationError(f"{mv.version} is already deployed in this hospital.")
        if live_version(hospital, mv.task) == mv:
            raise ValidationError(f"{mv.version} already reads this hospital's studies; it cannot be its own shadow.")
        current = ModelDeployment.objects.filter(hospital=hospital, task=mv.task, stage=DeploymentStage.SHADOW).first()
        if current is not None:
            raise ValidationError(
                f"{current.model_version.version} is already in shadow for the {mv.get_task_display()}; "
                "roll it back first (one shadow version per task keeps the workers' cost bounded)."
            )
        deployment = ModelDeployment.objects.create(
            hospital=hospital, model_version=mv, task=mv.task, stage=DeploymentStage.SHADOW
        )
        _record(hospital, mv, actor, None, deployment, note, request)
    return deployment


def set_ab_share(
    hospital: Hospital,
    mv: ModelVersion,
    percent: int,
    actor: Any,
    *,
    note: str = "",
    request: HttpRequest | None = None,
) -> ModelDeployment:
    """Let ``mv`` (in shadow, or in A/B already) give the live read on ``percent``% of the
    hospital's studies of its task."""
    if not 1 <= percent <= 100:
        raise ValidationError("The A/B share is a whole percentage from 1 to 100.")
    with transaction.atomic():
        deployment = ModelDeployment.objects.select_for_update().filter(hospital=hospital, model_version=mv).first()
        if deployment is None or deployment.stage not in (DeploymentStage.SHADOW, DeploymentStage.AB):
            raise ValidationError(
                f"Only a version in shadow or A/B can get an A/B share; {mv.version} is not "
                "(start it in shadow first, and compare it with the live version)."
            )
        others = (
            ModelDeployment.objects.filter(hospital=hospital, task=mv.task, stage=DeploymentStage.AB)
            .exclude(pk=deployment.pk)
            .aggregate(total=Sum("rollout_percent"))["total"]
            or 0
        )
        if others + percent > 100:
            raise ValidationError(f"Other versions already take {others}% of these studies: at most {100 - others}%.")
        before = _snapshot(deployment)
        deployment.stage, deployment.rollout_percent = DeploymentStage.AB, percent
        deployment.save(update_fields=["stage", "rollout_percent", "updated_at"])
        _record(hospital, mv, actor, before, deployment, note, request)
    return deployment


def make_active(
    hospital: Hospital, mv: ModelVersion, actor: Any, *, note: str = "", request: HttpRequest | None = None
) -> ModelDeployment:
    """Let ``mv`` (in A/B) give every live read of its task in this hospital."""
    with transaction.atomic():
        deployment = ModelDeployment.objects.select_for_update().filter(hospital=hospital, model_version=mv).first()
        if deployment is None or deployment.stage != DeploymentStage.AB:
            raise ValidationError(
                f"Only a version in A/B can become active; {mv.version} is not (give it an A/B share first)."
            )
        previous = (
            ModelDeployment.objects.select_for_update()
            .filter(hospital=hospital, task=mv.task, stage=DeploymentStage.ACTIVE)
            .first()
        )
        if previous is not None:
            _record(
                hospital, previous.model_version, actor, _snapshot(previous), None, f"replaced by {mv.version}", request
            )
            previous.delete()
        before = _snapshot(deployment)
        deployment.stage, deployment.rollout_percent = DeploymentStage.ACTIVE, 0
        deployment.save(update_fields=["stage", "rollout_percent", "updated_at"])
        _record(hospital, mv, actor, before, deployment, note, request)
    return deployment


def roll_back(
    hospital: Hospital, mv: ModelVersion, actor: Any, *, note: str = "", request: HttpRequest | None = None
) -> None:
    """Take ``mv`` out of the hospital at once, whatever its stage; its studies go back to the
    platform's active version. Results it already gave stay as they are."""
    with transaction.atomic():
        deployment = ModelDeployment.objects.select_for_update().filter(hospital=hospital, model_version=mv).first()
        if deployment is None:
            raise ValidationError(f"{mv.version} is not deployed in this hospital.")
        _record(hospital, mv, actor, _snapshot(deployment), None, note, request)
        deployment.delete()


#: The dashboard's actions: name → (button text, the stages a version must be in for it; None:
#: not deployed in the hospital).
ACTIONS: dict[str, tuple[str, frozenset[str | None]]] = {
    "shadow": ("Start shadow", frozenset({None})),
    "ab": ("Set A/B share", frozenset({DeploymentStage.SHADOW, DeploymentStage.AB})),
    "activate": ("Make active here", frozenset({DeploymentStage.AB})),
    "rollback": ("Roll back", frozenset({DeploymentStage.SHADOW, DeploymentStage.AB, DeploymentStage.ACTIVE})),
}


def perform(
    action: str,
    hospital: Hospital,
    mv: ModelVersion,
    actor: Any,
    *,
    percent: int | None = None,
    note: str = "",
    request: HttpRequest | None = None,
) -> None:
    """Run one of ``ACTIONS`` (the dashboard's confirmation form posts here)."""
    if action == "shadow":
        start_shadow(hospital, mv, actor, note=note, request=request)
    elif action == "ab":
        if percent is None:
            raise ValidationError("Give the A/B share as a whole percentage from 1 to 100.")
        set_ab_share(hospital, mv, percent, actor, note=note, request=request)
    elif action == "activate":
        make_active(hospital, mv, actor, note=note, request=request)
    elif action == "rollback":
        roll_back(hospital, mv, actor, note=note, request=request)
    else:
        raise ValidationError(f"Unknown action {action!r}.")
