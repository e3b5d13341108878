"""Loaded models, once per process.

A Celery worker process (or the web process, in the embedded mode where tasks run inline)
loads each artifact the first time a study needs it and keeps it for the life of the process,
keyed by the weights' SHA-256 and the version (two versions can share weights and differ in their
card: thresholds, feature-space check). Before loading, the weights file is hashed and compared with the
hash the registry recorded: a swapped or corrupted weights file is refused, never used.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from django.conf import settings

from .registry import WEIGHTS_FILE, file_sha256

if TYPE_CHECKING:
    from .models import ModelVersion

_lock = threading.RLock()
_artifacts: dict[tuple[str, str], Any] = {}
_pipelines: dict[tuple[tuple[str, str, str], ...], Any] = {}
_torch_configured = False


class ModelIntegrityError(Exception):
    """The weights on disk are not the ones the registry recorded for this model version."""


def _configure_torch() -> None:
    global _torch_configured
    if _torch_configured:
        return
    import torch

    torch.set_num_threads(max(1, int(settings.TORCH_NUM_THREADS)))
    _torch_configured = True


def load_model(mv: ModelVersion) -> Any:
    """The pipeline ``Artifact`` of ``mv``, loaded once per process and verified by hash."""
    key = (mv.weights_sha256, mv.version)
    cached = _artifacts.get(key)
    if cached is not None:
        return cached
    with _lock:
        cached = _artifacts.get(key)
        if cached is not None:
            return cached
        folder = mv.artifact_dir
        actual = file_sha256(folder / WEIGHTS_FILE)
        if actual != mv.weights_sha256:
            raise ModelIntegrityError(
                f"{mv}: weights in {folder} have SHA-256 {actual[:12]}…, registry expects {mv.short_sha}…"
            )
        _configure_torch()
        from .pipeline import load_artifact

        artifact = load_artifact(folder, lazy=True)  # the PyTorch model only if the backend needs it
        if artifact.sha256 != mv.weights_sha256:
            raise ModelIntegrityError(f"{mv}: loaded weights hash {artifact.sha256[:12]}… ≠ registry {mv.short_sha}…")
        _artifacts[key] = artifact
        return artifact


def get_pipeline(router_mv: ModelVersion, specialist_mvs: dict[str, ModelVersion]) -> Any:
    """A ``TwoStagePipeline`` for this router and these specialists (``{'chest': mv, 'brain': mv}``),
    built from the process-wide cache of loaded models."""
    key = tuple(
        sorted([("router", router_mv.weights_sha256, router_mv.version)])
        + sorted((task, mv.weights_sha256, mv.version) for task, mv in specialist_mvs.items())
    )
    pipeline = _pipelines.get(key)
    if pipeline is not None:
        return pipeline
    with _lock:
        pipeline = _pipelines.get(key)
        if pipeline is None:
            from .pipeline import TwoStagePipeline

            pipeline = TwoStagePipeline(
                router=load_model(router_mv),
                specialists={task: load_model(mv) for task, mv in specialist_mvs.items()},
                backend=settings.INFERENCE_BACKEND,
                cache_dir=settings.MODEL_CACHE_DIR,
            )
            _pipelines[key] = pipeline
    return pipeline


def loaded_hashes() -> set[str]:
    """SHA-256 of every model loaded in this process (for tests and diagnostics)."""
    return {sha for sha, _ in _artifacts}


def clear_cache() -> None:
    """Forget every loaded model (tests; a long-lived process after a registry change)."""
    with _lock:
        _artifacts.clear()
        _pipelines.clear()
