"""The per-process model cache: weights are verified against the registry before loading."""

from __future__ import annotations

import pytest

from apps.diagnosis import engine
from apps.diagnosis.registry import register_artifact

from .helpers import write_fake_artifact


def test_weights_that_do_not_match_the_registry_are_refused(db, settings, tmp_path):
    settings.MODEL_WEIGHTS_DIR = tmp_path
    folder = write_fake_artifact(tmp_path, "router", "swapped")
    mv, _ = register_artifact(folder)
    (folder / "model.safetensors").write_bytes(b"someone else's weights")
    engine.clear_cache()
    with pytest.raises(engine.ModelIntegrityError, match="registry expects"):
        engine.load_model(mv)
    assert mv.weights_sha256 not in engine.loaded_hashes()
