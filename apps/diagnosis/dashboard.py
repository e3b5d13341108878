"""What the models dashboard (``/h/<slug>/models/``) shows, read from the summary tables only.

Per task: the version that reads the hospital's studies, the versions it is trying (shadow, A/B)
with their figures beside the live version's, and the registered versions it could try next.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from apps.accounts.tenancy import Tenant

from . import charts, deployments
from .deployments import ACTIONS
from .drift import SCOPE
from .forms import AcknowledgeAlertForm
from .models import (
    DeploymentChange,
    DeploymentStage,
    DriftAlert,
    DriftCheck,
    ModelDeployment,
    ModelVersion,
    PerformanceArm,
    Task,
)
from .performance import VersionSummary, version_summaries

HISTORY_ROWS = 20
DRIFT_DAYS = 30


@dataclass
class TaskPanel:
    """One task's part of the dashboard."""

    task: str
    title: str
    live: ModelVersion | None
    deployments: list[ModelDeployment]
    candidates: list[ModelVersion]
    summaries: list[VersionSummary]
    actions: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    performance_charts: list[charts.Chart] = field(default_factory=list)
    drift_charts: list[charts.Chart] = field(default_factory=list)

    @property
    def shadow_summaries(self) -> list[VersionSummary]:
        return [s for s in self.summaries if s.arm == PerformanceArm.SHADOW]


def _actions_for(stage: str | None) -> list[tuple[str, str]]:
    return [(name, title) for name, (title, stages) in ACTIONS.items() if stage in stages]


def _performance_charts(task: str, live: ModelVersion | None, summaries: list[VersionSummary]) -> list[charts.Chart]:
    if task == Task.ROUTER:
        return []
    found = []
    for summary in summaries:
        if summary.arm == PerformanceArm.LIVE and summary.model_version == live:
            found += [
                charts.agreement_over_time(summary),
                charts.confusion_heatmap(summary),
                charts.calibration(summary),
            ]
        elif summary.arm == PerformanceArm.SHADOW:
            found.append(charts.agreement_over_time(summary))
    return found


def build(tenant: Tenant) -> dict[str, Any]:
    hospital = tenant.hospital
    summaries = version_summaries(hospital.pk)
    since = timezone.now().astimezone(dt.UTC).date() - dt.timedelta(days=DRIFT_DAYS)
    checks: dict[tuple[str, str], list[DriftCheck]] = defaultdict(list)
    for check in DriftCheck.objects.filter(hospital=hospital, day__gt=since):
        checks[(check.task, check.signal)].append(check)
    own = list(ModelDeployment.objects.filter(hospital=hospital).select_related("model_version"))
    versions = list(ModelVersion.objects.all())
    panels = []
    for task, title in Task.choices:
        live = deployments.live_version(hospital, task)
        task_deployments = [d for d in own if d.task == task]
        deployed = {d.model_version_id for d in task_deployments}
        candidates = [mv for mv in versions if mv.task == task and mv.pk not in deployed and mv != live]
        panel = TaskPanel(
            task=task,
            title=title,
            live=live,
            deployments=task_deployments,
            candidates=candidates,
            summaries=[s for s in summaries if s.model_version.task == task],
        )
        panel.performance_charts = _performance_charts(task, live, panel.summaries)
        panel.drift_charts = [
            charts.drift_signal(SCOPE[task], signal, found)
            for (check_task, signal), found in sorted(checks.items())
            if check_task == task
        ]
        if tenant.is_admin:
            panel.actions = {d.model_version_id: _actions_for(d.stage) for d in task_deployments}
            panel.actions.update({mv.pk: _actions_for(None) for mv in candidates})
        panels.append(panel)
    history = DeploymentChange.objects.filter(hospital=hospital).select_related("model_version", "actor")
    alerts = DriftAlert.objects.filter(hospital=hospital, acknowledged_at__isnull=True).order_by("-opened_at")
    return {
        "alerts": list(alerts),
        "acknowledge_form": AcknowledgeAlertForm() if tenant.is_admin else None,
        "panels": panels,
        "history": list(history[:HISTORY_ROWS]),
        "may_change": tenant.is_admin,
        "stages": DeploymentStage,
    }
