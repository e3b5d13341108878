"""Which version of a specialist to make active: every artifact of a task, measured on the same
validation set carved from ``train/`` exactly as the current trainer carves it (by patient for chest
X-rays, by near-duplicate group for brain MRI). ``test/`` is not read.

    python benchmarks/selection.py brain [--extra DIR ...]

Versions trained before a change of the carving may have trained on some of these validation images;
the table says so, and their figures are then optimistic (biased in their favour, never against).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import DATASETS, WEIGHTS, machine, write_section


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=["chest", "brain"])
    parser.add_argument("--extra", nargs="*", default=[], help="More artifact folders to compare.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.12)
    args = parser.parse_args()

    import numpy as np
    import torch

    from apps.diagnosis.pipeline import load_artifact
    from apps.diagnosis.pipeline.metrics import classification_metrics
    from apps.diagnosis.pipeline.preprocess import apply as preprocess
    from apps.diagnosis.pipeline.training import TASK_LABELS, carve_validation, load_folder, predict_logits

    data = DATASETS / ("chest_xray" if args.task == "chest" else "brain_mri") / "train"
    if not data.is_dir():
        print(f"{data} not found: nothing to compare (this benchmark needs ../shared/datasets).")
        return 0
    torch.set_num_threads(2)
    folders = sorted(p for p in (WEIGHTS / args.task).iterdir() if (p / "card.json").is_file())
    folders += [Path(p) for p in args.extra]
    rows = []
    cache: dict[int, tuple[np.ndarray, np.ndarray, list[str], np.ndarray]] = {}
    for folder in folders:
        art = load_artifact(folder)
        if art.input_size not in cache:
            xs, ys, names = load_folder(data, TASK_LABELS[args.task], art.input_size)
            mask, _ = carve_validation(args.task, xs, names, ys, {"val_fraction": args.val_fraction, "seed": args.seed})
            cache[art.input_size] = (xs, ys, names, mask)
        xs, ys, _, mask = cache[art.input_size]
        xv = preprocess(art.preprocessing, xs[mask])
        probs = torch.softmax(predict_logits(art.model, xv, art.input_size, bf16=False) / art.temperature, 1).numpy()
        m = classification_metrics(ys[mask], probs, art.labels)
        carving = art.card.get("training", {}).get("validation", "")
        same = carving.startswith("by patient") if args.task == "chest" else carving.startswith("by near-duplicate")
        shipped = folder.resolve().is_relative_to(WEIGHTS.resolve())
        rows.append(
            (art.version + ("" if shipped else " (not shipped)"), art.input_size, carving, same, int(mask.sum()), m)
        )
        print(f"{art.version}: acc {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} ECE {m['ece']:.4f}", flush=True)

    lines = [
        f"## Version selection, {args.task} (`benchmarks/selection.py {args.task}`)",
        "",
        f"Machine: {machine()}. Validation carved from `{data.relative_to(DATASETS.parent)}` as the current "
        f"trainer carves it (seed {args.seed}, fraction {args.val_fraction}); `test/` is not read.",
        "",
        "| version | input | its own validation carving | trained without these images | n | accuracy | macro-F1 | ECE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for version, size, carving, same, n, m in rows:
        lines.append(
            f"| {version} | {size} px | {carving or '?'} | {'yes' if same else '**no** (figures optimistic)'} "
            f"| {n} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['ece']:.4f} |"
        )
    best = max(rows, key=lambda r: r[5]["macro_f1"])
    lines += ["", f"Highest validation macro-F1: `{best[0]}`."]
    print(json.dumps({r[0]: round(r[5]["macro_f1"], 4) for r in rows}))
    write_section(f"selection-{args.task}", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
