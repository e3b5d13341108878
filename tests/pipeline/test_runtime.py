"""Every inference backend gives the eager model's answer: same probabilities, same Grad-CAM map,
same region of interest. ONNX models are exported once and then loaded from the cache."""

from pathlib import Path

import numpy as np
import pytest
import torch

from apps.diagnosis.pipeline import TwoStagePipeline, find_artifacts, load_artifact
from apps.diagnosis.pipeline.runtime import BACKENDS, OnnxRunner, build_runner

WEIGHTS = Path(__file__).resolve().parents[2] / "apps" / "diagnosis" / "weights"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    """The two fixture images read by the same weights on every backend."""
    cache = tmp_path_factory.mktemp("onnx-cache")
    images = [(FIXTURES / name).read_bytes() for name in ("chest_xray.jpg", "brain_mri.jpg")]
    out = {}
    for backend in ("eager", "torchscript", "onnxruntime"):
        pipe = TwoStagePipeline.from_directory(WEIGHTS, backend=backend, cache_dir=cache)
        assert set(pipe.backends.values()) == {backend}
        out[backend] = [pipe.run(data) for data in images]
    return out, cache


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_backend_matches_eager(reads, backend):
    results, _ = reads
    for eager, other in zip(results["eager"], results[backend], strict=True):
        assert (other.route, other.label) == (eager.route, eager.label)
        for label, p in eager.probabilities.items():
            assert other.probabilities[label] == pytest.approx(p, abs=1e-4)
        assert np.abs(other.heatmap - eager.heatmap).max() < 1e-3
        assert other.roi_box == eager.roi_box


def test_onnx_models_are_cached_by_weights_hash(reads):
    results, cache = reads
    files = sorted(p.name for p in cache.iterdir())
    assert len(files) == 3 and all(f.endswith(".onnx") for f in files)
    for task in ("router", "chest", "brain"):
        art = load_artifact(find_artifacts(WEIGHTS)[task])
        assert any(f.startswith(f"{task}-{art.sha256[:16]}-") for f in files)
    # A second start loads the cached file rather than exporting again.
    before = {p: p.stat().st_mtime_ns for p in cache.iterdir()}
    TwoStagePipeline.from_directory(WEIGHTS, backend="onnxruntime", cache_dir=cache)
    assert {p: p.stat().st_mtime_ns for p in cache.iterdir()} == before


def test_onnx_runner_takes_a_batch():
    art = load_artifact(find_artifacts(WEIGHTS)["chest"])
    runner = OnnxRunner(art)
    x = torch.randn(3, 1, art.input_size, art.input_size)
    logits, features = runner(x)
    with torch.inference_mode():
        expected = art.model(x)
    assert logits.shape == (3, len(art.labels)) and features.shape[0] == 3
    assert torch.allclose(logits, expected, atol=1e-3)


def test_unknown_backend_is_refused():
    art = load_artifact(find_artifacts(WEIGHTS)["router"])
    with pytest.raises(ValueError, match="backend must be one of"):
        build_runner(art, "tensorrt")
    assert "auto" in BACKENDS


def test_with_a_cached_export_the_pytorch_models_are_never_built(reads):
    """A worker that finds its ONNX models cached reads images without building the PyTorch models
    (timm and three models stay out of its memory); the head's weights come from the file."""
    results, cache = reads
    pipe = TwoStagePipeline.from_directory(WEIGHTS, backend="onnxruntime", cache_dir=cache)
    result = pipe.run((FIXTURES / "chest_xray.jpg").read_bytes())
    assert result.label == results["eager"][0].label
    arts = [pipe.router, *pipe.specialists.values()]
    assert not any(art.model_loaded for art in arts)
    chest = pipe.specialists["chest"]
    from_file = chest.classifier_weight.clone()
    assert torch.equal(from_file, chest.model.get_classifier().weight)  # builds it, for the comparison
    assert chest.model_loaded
