"""Which version of a specialist to make active: every artifact of a task, measured on the same
validation set carved from ``train/`` exactly as the current trainer carves it (by patient for chest
X-rays, by near-duplicate group for brain MRI), once, on the images at the size they are stored at,
so that models of every input size are compared on the same images. ``test/`` is not read.

    python benchmarks/selection.py brain [--extra DIR ...]

Versions trained before a change of the carving may have trained on some of these validation images;
the table says so, and their figures are then optimistic (biased in their favour, never against).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from _common import DATASETS, WEIGHTS, machine, stored_validation, write_section


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
    from apps.diagnosis.pipeline.training import (
        TASK_LABELS,
        load_folder,
        names_digest,
        predict_logits,
        top_two_margin,
    )

    data = DATASETS / ("chest_xray" if args.task == "chest" else "brain_mri") / "train"
    if not data.is_dir():
        print(f"{data} not found: nothing to compare (this benchmark needs ../shared/datasets).")
        return 0
    torch.set_num_threads(2)
    folders = sorted(p for p in (WEIGHTS / args.task).iterdir() if (p / "card.json").is_file())
    folders += [Path(p) for p in args.extra]
    labels = TASK_LABELS[args.task]
    xs, ys, names, mask, stored, how = stored_validation(
        args.task, data, {"val_fraction": args.val_fraction, "seed": args.seed}
    )
    digest = names_digest([n for n, m in zip(names, mask, strict=True) if m])
    rows = []
    cache: dict[int, np.ndarray] = {stored: xs[mask]}
    for folder in folders:
        art = load_artifact(folder)
        if art.input_size not in cache:
            cache[art.input_size] = load_folder(data, labels, art.input_size)[0][mask]
        xv = preprocess(art.preprocessing, cache[art.input_size])
        probs = torch.softmax(predict_logits(art.model, xv, art.input_size, bf16=False) / art.temperature, 1).numpy()
        m = classification_metrics(ys[mask], probs, art.labels)
        # the reads it commits to at its own indeterminate margin (chosen on this validation set)
        committed = top_two_margin(probs) >= art.thresholds.get("min_margin", 0.0)
        m["coverage"] = float(committed.mean())
        m["committed_accuracy"] = float((probs.argmax(1) == ys[mask])[committed].mean()) if committed.any() else 0.0
        carving = art.card.get("training", {}).get("validation", "")
        # listed as these very names, or drawn the same way (the near-duplicate grouping depends on the
        # pixels: the same only when drawn at the stored size)
        same = digest[:16] in carving or (
            carving.startswith("by patient")
            if args.task == "chest"
            else carving.startswith("by near-duplicate") and art.input_size == stored
        )
        shipped = folder.resolve().is_relative_to(WEIGHTS.resolve())
        rows.append(
            (
                art.version + ("" if shipped else " (not shipped)"),
                art.input_size,
                carving,
                same,
                int(mask.sum()),
                m,
                art.thresholds.get("min_margin", 0.0),
            )
        )
        print(
            f"{art.version}: acc {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} ECE {m['ece']:.4f} "
            f"coverage {m['coverage']:.3f} at {m['committed_accuracy']:.4f}",
            flush=True,
        )

    lines = [
        f"## Version selection, {args.task} (`benchmarks/selection.py {args.task}`)",
        "",
        f"Machine: {machine()}. Validation carved from `{data.relative_to(DATASETS.parent)}` as the current "
        f"trainer carves it ({how}, seed {args.seed}, fraction {args.val_fraction}, on the {stored} px images as "
        f"stored; names sha256 `{digest[:16]}`), the same images for every version; `test/` is not read.",
        "",
        "| version | input | its own validation carving | trained without these images | n | accuracy | macro-F1 | ECE "
        "| min margin | committed reads (coverage) | their accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for version, size, carving, same, n, m, margin in rows:
        lines.append(
            f"| {version} | {size} px | {carving or '?'} | {'yes' if same else '**no** (figures optimistic)'} "
            f"| {n} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['ece']:.4f} | {margin:.3f} | {m['coverage']:.3f} "
            f"| {m['committed_accuracy']:.4f} |"
        )
    best = max((r for r in rows if r[3]), key=lambda r: r[5]["macro_f1"], default=None)
    if best is not None:
        lines += ["", f"Highest validation macro-F1 among versions trained without these images: `{best[0]}`."]
    print(json.dumps({r[0]: round(r[5]["macro_f1"], 4) for r in rows}))
    write_section(f"selection-{args.task}", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
