"""Does intensity preprocessing help? CLAHE for chest X-rays, foreground z-score for brain MRI.

Each variant is trained with the same seed, split, schedule and budget (short runs at a reduced
input size so the comparison fits a CPU), and compared on **validation** data carved from
``train/`` (by patient for chest X-rays). ``test/`` is not read: this decides what the shipped
weights use, so it must not see the test split.

    python benchmarks/preprocessing.py [--epochs 4] [--size 128] [--tasks chest brain]
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import DATASETS, machine, write_section

VARIANTS = {"chest": ["none", "clahe"], "brain": ["none", "zscore"]}
SUBDIRS = {"chest": "chest_xray", "brain": "brain_mri"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="+", default=["chest", "brain"], choices=sorted(VARIANTS))
    args = parser.parse_args()
    if not all((DATASETS / SUBDIRS[t] / "train").is_dir() for t in args.tasks):
        print(f"skipped: {DATASETS} has no train/ splits (the datasets live beside the checkout)")
        return 0
    import torch

    from apps.diagnosis.pipeline.metrics import classification_metrics
    from apps.diagnosis.pipeline.preprocess import apply
    from apps.diagnosis.pipeline.training import (
        DEFAULT_PRETRAINED,
        DEFAULTS,
        TASK_LABELS,
        fast_bf16,
        fit,
        load_folder,
        predict_logits,
        validation_mask,
    )

    torch.set_num_threads(2)
    rows = []
    for task in args.tasks:
        labels = TASK_LABELS[task]
        xs, ys, names = load_folder(DATASETS / SUBDIRS[task] / "train", labels, args.size)
        mask = validation_mask(task, names, ys, 0.12, args.seed)
        for method in VARIANTS[task]:
            started = time.time()
            px = apply(method, xs)
            cfg = {
                **DEFAULTS[task],
                "epochs": args.epochs,
                "img_size": args.size,
                "seed": args.seed,
                "patience": args.epochs,
                "bf16": fast_bf16(),
                "pretrained": str(DEFAULT_PRETRAINED) if DEFAULT_PRETRAINED.exists() else None,
            }
            model, _, history = fit(task, px[~mask], ys[~mask], px[mask], ys[mask], cfg, log=print)
            probs = torch.softmax(predict_logits(model, px[mask], args.size, bf16=fast_bf16()), 1).numpy()
            m = classification_metrics(ys[mask], probs, labels)
            best_epoch = max(history, key=lambda h: h["val_macro_f1"])["epoch"]
            rows.append(
                (task, method, int(mask.sum()), m["accuracy"], m["macro_f1"], best_epoch, time.time() - started)
            )
            print(f"{task}/{method}: val acc {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f}", flush=True)

    table = [
        "| task | preprocessing | validation n | val accuracy | val macro-F1 | best epoch | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    table += [f"| {t} | {m} | {n} | {a:.4f} | {f:.4f} | {e} | {s:.0f} |" for t, m, n, a, f, e, s in rows]
    verdicts = []
    for task in args.tasks:
        base = next(r for r in rows if r[0] == task and r[1] == "none")
        for r in rows:
            if r[0] == task and r[1] != "none":
                delta = r[4] - base[4]
                verdict = "helps" if delta >= 0.01 else ("hurts" if delta <= -0.01 else "no clear difference")
                verdicts.append(f"- {task}: {r[1]} vs none, validation macro-F1 {delta:+.4f} → {verdict}.")
    helpful = [v for v in verdicts if v.endswith("→ helps.")]
    verdicts.append(
        "- Decision: train the shipped specialists with the method that helps (`train_model --preprocessing`)."
        if helpful
        else "- Decision: no method helps, so the shipped specialists keep plain scaling (`preprocessing_method: none`)."
    )
    body = "\n".join(
        [
            "## Preprocessing (`benchmarks/preprocessing.py`)",
            "",
            f"Machine: {machine()}. Same seed ({args.seed}), split, schedule and budget for every variant: "
            f"{args.epochs} epochs at {args.size} px from the ImageNet weights; compared on validation carved "
            "from `train/` (by patient for chest X-rays). `test/` is not read. One seed, so differences under "
            "about one point of macro-F1 are within run-to-run noise; the rule used is ±0.01.",
            "",
            *table,
            "",
            *verdicts,
        ]
    )
    print(body)
    write_section("preprocessing", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
