"""Fixtures of the diagnosis tests.

``fake_pipeline`` stands in for the trained networks (the ML pipeline has its own tests in
tests/pipeline/) and returns real ``PipelineResult`` objects: it lets the task, storage,
idempotency and failure paths be tested fast and without weights. Tests marked
``real_models`` use the shipped weights instead.
"""

from __future__ import annotations

from typing import Any

import pytest
from django_scopes import scopes_disabled

from apps.diagnosis import engine
from apps.diagnosis.models import ModelVersion
from apps.diagnosis.pipeline.core import PipelineResult

from .helpers import CHEST_LABELS, fake_version, heatmap_png, overlay_png


@pytest.fixture
def fake_models(db):
    """Active registry rows for the three tasks (whatever was registered from disk is removed)."""
    with scopes_disabled():
        ModelVersion.objects.all().delete()
        versions = {task: fake_version(task, "v1", is_active=True) for task in ("router", "chest", "brain")}
    return versions


def FakeResult(**fields: Any) -> PipelineResult:  # noqa: N802 - reads like the class it stands in for
    """A real ``PipelineResult`` as a chest read would produce it (overridable field by field)."""
    values: dict[str, Any] = {
        "route": "chest_xray",
        "route_probabilities": {"chest_xray": 0.97, "brain_mri": 0.02, "unsupported": 0.01},
        "refused": False,
        "refusal_reason": None,
        "modality_tag": None,
        "modality_warning": None,
        "task": "chest",
        "label": "viral_pneumonia",
        "probabilities": {"normal": 0.1, "bacterial_pneumonia": 0.2, "viral_pneumonia": 0.7},
        "heatmap": None,
        "overlay_png": overlay_png(),
        "heatmap_png": heatmap_png(),
        "roi_box": (3, 4, 20, 25),
        "models": {},
        "timings_ms": {"decode": 1.5, "router": 4.0, "specialist": 8.0},
        "image_size": (64, 64),
    }
    values.update(fields)
    return PipelineResult(**values)


REFUSED = FakeResult(
    route="unsupported",
    route_probabilities={"chest_xray": 0.05, "brain_mri": 0.05, "unsupported": 0.9},
    refused=True,
    refusal_code="other_modality",
    refusal_reason="it looks like a photograph, not a medical image",
    task=None,
    label=None,
    probabilities={},
    overlay_png=None,
    heatmap_png=None,
    roi_box=None,
)

#: The specialist read the image but hesitates between bacterial and viral pneumonia.
INDETERMINATE = FakeResult(
    label="bacterial_pneumonia",
    probabilities={"normal": 0.04, "bacterial_pneumonia": 0.49, "viral_pneumonia": 0.47},
    indeterminate=True,
    candidates=["bacterial_pneumonia", "viral_pneumonia"],
    ood={"score": 0.8, "threshold": 1.5},
    roi_box=None,
)


class FakePipeline:
    """Returns a fixed result (or raises ``error``) and counts its runs."""

    def __init__(self) -> None:
        self.result: PipelineResult = FakeResult()
        self.error: BaseException | None = None
        self.runs = 0
        self.built_with: tuple[Any, Any] | None = None

    def run(self, data: bytes) -> PipelineResult:
        self.runs += 1
        if self.error is not None:
            raise self.error
        return self.result


@pytest.fixture
def fake_pipeline(monkeypatch, fake_models):
    pipeline = FakePipeline()

    def get_pipeline(router_mv, specialist_mvs):
        pipeline.built_with = (router_mv, specialist_mvs)
        return pipeline

    monkeypatch.setattr(engine, "get_pipeline", get_pipeline)
    return pipeline


__all__ = ["CHEST_LABELS", "INDETERMINATE", "REFUSED", "FakePipeline", "FakeResult"]
