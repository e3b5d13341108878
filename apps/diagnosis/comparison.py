"""Does a retrained version help this hospital's own patients? ``evaluate_model --compare-active``.

The candidate artifact and the version that now reads the hospital's studies read the same
held-out cases (the ``test/`` split of an ``export_feedback`` folder: patients never trained
on), each through the production pipeline (``TwoStagePipeline.run``, with the live router and
the other live specialist), so that refusals and indeterminate reads count as they would on the
ward. A case is *right* when the read names the doctor's label; the two versions are compared
case by case (McNemar's exact test on the cases only one of them got right).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from scipy import stats as scipy_stats

from . import engine
from .models import ModelVersion, Task

if TYPE_CHECKING:
    from .pipeline.artifact import Artifact

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm"}


@dataclass
class ArmResult:
    """How one version read the cases: per case "refused", "indeterminate" or the label."""

    name: str
    version: str
    outcomes: list[str] = field(default_factory=list)

    def summary(self, truths: list[str]) -> dict[str, Any]:
        n = len(truths)
        committed = [
            (o, t) for o, t in zip(self.outcomes, truths, strict=True) if o not in ("refused", "indeterminate")
        ]
        right = sum(1 for o, t in committed if o == t)
        return {
            "version": self.version,
            "cases": n,
            "right": right,
            "right_share": right / n if n else None,
            "committed_share": len(committed) / n if n else None,
            "accuracy_when_committed": right / len(committed) if committed else None,
            "indeterminate": self.outcomes.count("indeterminate"),
            "refused": self.outcomes.count("refused"),
        }


def held_out_cases(data_dir: Path, labels: list[str]) -> list[tuple[Path, str]]:
    """(file, doctor's label) of ``data_dir/test/<label>/*`` (or ``data_dir/<label>/*``)."""
    folder = data_dir / "test" if (data_dir / "test").is_dir() else data_dir
    cases = [
        (path, label)
        for label in labels
        if (folder / label).is_dir()
        for path in sorted((folder / label).iterdir())
        if path.suffix.lower() in IMAGE_SUFFIXES
    ]
    if not cases:
        raise ValueError(f"No labelled images under {folder} (expected <label>/ folders of {', '.join(labels)}).")
    return cases


def _live(task: str) -> ModelVersion:
    mv = ModelVersion.objects.filter(task=task, is_active=True).first()
    if mv is None:
        raise ValueError(f"No active {task} version is registered.")
    return mv


def _read_all(name: str, version: str, pipeline: Any, cases: list[tuple[Path, str]]) -> ArmResult:
    from .pipeline.decode import DecodeError

    arm = ArmResult(name, version)
    for path, _ in cases:
        try:
            result = pipeline.run(path.read_bytes())
        except DecodeError:
            arm.outcomes.append("refused")
            continue
        if result.refused or not result.label:
            arm.outcomes.append("refused")
        elif result.indeterminate:
            arm.outcomes.append("indeterminate")
        else:
            arm.outcomes.append(result.label)
    return arm


def compare(candidate_dir: Path, data_dir: Path, live: ModelVersion | None = None) -> dict[str, Any]:
    """Read the held-out cases with the candidate and with ``live`` (default: the platform's
    active version of the candidate's task); the figures of both and the paired comparison."""
    from .pipeline import TwoStagePipeline, load_artifact

    candidate = load_artifact(candidate_dir, lazy=True)
    if candidate.task == Task.ROUTER:
        raise ValueError("Compare specialists (chest, brain); the router is measured by its refusals.")
    live = live or _live(candidate.task)
    if live.task != candidate.task:
        raise ValueError(f"{live} is not a {candidate.task} version.")
    cases = held_out_cases(Path(data_dir), list(candidate.labels))
    truths = [label for _, label in cases]
    router = engine.load_model(_live(Task.ROUTER))
    other: dict[str, Artifact] = {
        t: engine.load_model(_live(t)) for t in (Task.CHEST, Task.BRAIN) if t != candidate.task
    }
    options = {"backend": settings.INFERENCE_BACKEND, "cache_dir": settings.MODEL_CACHE_DIR}
    arms = [
        _read_all(
            "candidate",
            candidate.version,
            TwoStagePipeline(router, {**other, candidate.task: candidate}, **options),
            cases,
        ),
        _read_all(
            "live",
            live.version,
            engine.get_pipeline(_live(Task.ROUTER), _live_specialists(candidate.task, live)),
            cases,
        ),
    ]
    right = [[o == t for o, t in zip(arm.outcomes, truths, strict=True)] for arm in arms]
    paired = {
        "both": sum(1 for a, b in zip(*right, strict=True) if a and b),
        "candidate_only": sum(1 for a, b in zip(*right, strict=True) if a and not b),
        "live_only": sum(1 for a, b in zip(*right, strict=True) if b and not a),
        "neither": sum(1 for a, b in zip(*right, strict=True) if not a and not b),
    }
    discordant = paired["candidate_only"] + paired["live_only"]
    p_value = float(scipy_stats.binomtest(paired["candidate_only"], discordant, 0.5).pvalue) if discordant else None
    return {
        "task": candidate.task,
        "cases": len(cases),
        "data": str(data_dir),
        "candidate": arms[0].summary(truths),
        "live": arms[1].summary(truths),
        "paired": paired,
        "mcnemar_exact_p": p_value,
    }


def _live_specialists(task: str, live: ModelVersion) -> dict[str, ModelVersion]:
    return {t: (live if t == task else _live(t)) for t in (Task.CHEST.value, Task.BRAIN.value)}
