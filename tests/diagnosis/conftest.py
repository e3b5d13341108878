"""Fixtures of the diagnosis tests.

``fake_pipeline`` stands in for the trained networks (the ML pipeline has its own tests in
tests/pipeline/): it lets the task, storage, idempotency and failure paths be tested fast and
without weights. Tests marked ``real_models`` use the shipped weights instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from django_scopes import scopes_disabled

from apps.diagnosis import engine
from apps.diagnosis.models import ModelVersion

from .helpers import CHEST_LABELS, fake_version, overlay_png


@pytest.fixture
def fake_models(db):
    """Active registry rows for the three tasks (whatever was registered from disk is removed)."""
    with scopes_disabled():
        ModelVersion.objects.all().delete()
        versions = {task: fake_version(task, "v1", is_active=True) for task in ("router", "chest", "brain")}
    return versions


@dataclass
class FakeResult:
    route: str = "chest_xray"
    route_probabilities: dict[str, float] = field(
        default_factory=lambda: {"chest_xray": 0.97, "brain_mri": 0.02, "unsupported": 0.01}
    )
    refused: bool = False
    refusal_reason: str = ""
    modality_tag: str | None = None
    modality_warning: str = ""
    task: str | None = "chest"
    label: str | None = "viral_pneumonia"
    probabilities: dict[str, float] = field(
        default_factory=lambda: {"normal": 0.1, "bacterial_pneumonia": 0.2, "viral_pneumonia": 0.7}
    )
    heatmap: Any = None
    overlay_png: bytes | None = field(default_factory=overlay_png)
    roi_box: tuple[int, int, int, int] | None = (3, 4, 20, 25)
    models: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=lambda: {"decode": 1.5, "router": 4.0, "specialist": 8.0})
    image_size: tuple[int, int] = (64, 64)


REFUSED = FakeResult(
    route="unsupported",
    route_probabilities={"chest_xray": 0.05, "brain_mri": 0.05, "unsupported": 0.9},
    refused=True,
    refusal_reason="it looks like a photograph, not a medical image",
    task=None,
    label=None,
    probabilities={},
    overlay_png=None,
    roi_box=None,
)


class FakePipeline:
    """Returns a fixed result (or raises ``error``) and counts its runs."""

    def __init__(self) -> None:
        self.result: FakeResult = FakeResult()
        self.error: BaseException | None = None
        self.runs = 0
        self.built_with: tuple[Any, Any] | None = None

    def run(self, data: bytes) -> FakeResult:
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


__all__ = ["CHEST_LABELS", "REFUSED", "FakePipeline", "FakeResult"]
