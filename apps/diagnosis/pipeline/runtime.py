"""How the pipeline runs its models: ONNX Runtime, TorchScript or eager PyTorch.

Every runner maps a normalised (N, 1, S, S) input to ``(logits, features)`` — the features are the
Grad-CAM target layer's output, so a read needs one forward pass and no backward pass (see cam.py).

* ``onnxruntime`` (the default when the package is installed): the runner is exported to ONNX once
  and run by ONNX Runtime's CPU provider. On the team's 2-core AVX2 machines it ran the 96 px router
  in 3.5 ms against 11.7 ms for a frozen TorchScript trace, and a 192 px specialist in 10 ms against
  19 ms (``benchmarks/latency.py`` has the end-to-end figures). The export takes about a second per
  model, so with a ``cache_dir`` the ONNX file is kept there, keyed by the weights' SHA-256 and the
  torch version, and later processes only load it.
* ``torchscript``: a traced and frozen copy (BatchNorm folded into the convolutions).
* ``eager``: the artifact's own module, unchanged.

Whatever runs, the eager ``Artifact.model`` stays the reference: tests compare every backend with it.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .artifact import Artifact

if TYPE_CHECKING:
    from timm.models.efficientnet import EfficientNet

log = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "torchscript", "eager")
Runner = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class TargetLayerRunner(torch.nn.Module):
    """(logits, target-layer features) in one forward pass of a timm model."""

    def __init__(self, model: EfficientNet):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.model.forward_features(x)
        return self.model.forward_head(features), features


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def build_runner(art: Artifact, backend: str = "auto", cache_dir: str | Path | None = None) -> tuple[Runner, str]:
    """A runner for ``art`` and the name of the backend it uses.

    ``auto`` is ONNX Runtime when it is installed and the export works, TorchScript otherwise
    (the reason is logged). Naming a backend that cannot be built raises.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend in ("auto", "onnxruntime"):
        try:
            return OnnxRunner(art, cache_dir), "onnxruntime"
        except Exception as exc:
            if backend == "onnxruntime":
                raise
            log.warning("ONNX Runtime unavailable for %s (%s); using TorchScript", art.version, exc)
            backend = "torchscript"
    if backend == "torchscript":
        frozen = _frozen(art)
        if frozen is not None:
            return frozen, "torchscript"
        log.warning("TorchScript freeze refused for %s; running eager", art.version)
    return TargetLayerRunner(art.model).eval(), "eager"


def _example(art: Artifact) -> torch.Tensor:
    return torch.zeros(1, 1, art.input_size, art.input_size).contiguous(memory_format=torch.channels_last)


def _frozen(art: Artifact) -> torch.nn.Module | None:
    """TorchScript trace + freeze; None if this torch build refuses."""
    runner = TargetLayerRunner(art.model).eval()
    example = _example(art)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # freeze alone folds BatchNorm and is faster here than optimize_for_inference's MKLDNN
            # layouts; check_trace=False avoids a second traced graph (~60 MB of peak RSS per model).
            frozen = torch.jit.freeze(torch.jit.trace(runner, example, check_trace=False))
            frozen(example)
            frozen(example)
        return frozen
    except Exception:  # noqa: BLE001  # pragma: no cover - depends on the torch build
        return None


class OnnxRunner:
    """The artifact's runner exported to ONNX and run by ONNX Runtime (CPU)."""

    def __init__(self, art: Artifact, cache_dir: str | Path | None = None, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads or torch.get_num_threads())
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between runs: spinning ORT threads fight torch's own threads (resizing,
        # Grad-CAM) for the cores. Measured on 2 cores: 53.6 ms end to end with spinning, 20.6 without.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(_onnx_model(art, cache_dir), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, features = self.session.run(None, {self.input_name: np.ascontiguousarray(x.numpy(), np.float32)})
        return torch.from_numpy(logits), torch.from_numpy(features)


def _onnx_model(art: Artifact, cache_dir: str | Path | None) -> bytes | str:
    """The ONNX model of ``art``: a cached file's path when ``cache_dir`` is usable, else bytes."""
    name = f"{art.task}-{art.sha256[:16]}-{art.input_size}px-torch{torch.__version__.split('+')[0]}.onnx"
    path = Path(cache_dir) / name if cache_dir else None
    if path is not None and path.is_file():
        return str(path)
    data = export_onnx(art)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Written under a temporary name and renamed: a worker starting beside this one
            # never reads half a file.
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("Could not cache the ONNX model in %s (%s); exporting on every start", path.parent, exc)
    return data


def export_onnx(art: Artifact) -> bytes:
    """ONNX bytes of the artifact's (logits, features) runner, with a dynamic batch axis."""
    runner = TargetLayerRunner(art.model).eval()
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            runner,
            (torch.zeros(1, 1, art.input_size, art.input_size),),
            buf,  # type: ignore[arg-type]  # the TorchScript exporter (dynamo=False) writes to a file object too
            input_names=["x"],
            output_names=["logits", "features"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return buf.getvalue()
