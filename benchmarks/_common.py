"""Shared helpers for the benchmark scripts (run from the repository root)."""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATASETS = Path(os.environ.get("IMAGEMEDIX_DATASETS", ROOT.parent / "shared" / "datasets"))
WEIGHTS = Path(os.environ.get("MODEL_WEIGHTS_DIR", ROOT / "apps" / "diagnosis" / "weights"))
REPORT = ROOT / "docs" / "BENCHMARKS.md"
HEADER = """# Benchmarks

Produced by `python benchmarks/accuracy.py`, `python benchmarks/router_loko.py --train`,
`python benchmarks/latency.py` and `python benchmarks/preprocessing.py` (each rewrites its own section). Accuracy uses the official `test/` splits of `../shared/datasets`, which were never used to
train, tune thresholds or pick checkpoints. Latency figures are medians measured side by side in one
run on the machine named in the section; these machines are noisy, so compare ratios, not absolutes.
"""


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The vector ISA matters: the same "AMD EPYC" name has come with and without AVX-512 here, and
    # fp32 inference and bf16 training run at very different speeds on the two.
    isa = torch.backends.cpu.get_cpu_capability()
    return f"{cpu} ({isa}), {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def write_section(name: str, body: str) -> None:
    """Replace the section between <!-- name:start --> and <!-- name:end --> in docs/BENCHMARKS.md."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    text = REPORT.read_text() if REPORT.exists() else HEADER
    block = f"<!-- {name}:start -->\n{body.strip()}\n<!-- {name}:end -->"
    pattern = re.compile(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    REPORT.write_text(text)


def stored_validation(task: str, folder: Path, cfg: dict) -> tuple:
    """``train/`` of ``task`` at the size it is stored in, and the trainer's validation mask for
    ``cfg`` (``val_fraction``, ``seed``, ``val_grouping`` or a ``validation_names`` list, taken
    relative to the repository): (images, labels, file names, mask, stored size, how it was drawn)."""
    from PIL import Image

    from apps.diagnosis.pipeline.training import TASK_LABELS, carve_validation, load_folder

    labels = TASK_LABELS[task]
    with Image.open(next(p for p in sorted((folder / labels[0]).iterdir()))) as first:
        stored = first.size[0]
    xs, ys, names = load_folder(folder, labels, stored)
    if cfg.get("validation_names"):
        cfg = {**cfg, "validation_names": str(ROOT / cfg["validation_names"])}
    mask, how = carve_validation(task, xs, names, ys, cfg)
    return xs, ys, names, mask, stored, how
