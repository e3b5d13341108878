"""Accuracy of the shipped weights on the official test splits, router accuracy and refusal of
out-of-distribution images the router never trained on. Skips politely without ../shared/datasets.

    python benchmarks/accuracy.py
"""

from __future__ import annotations

import io
import json
import sys
import time

from _common import DATASETS, WEIGHTS, machine, write_section

TARGETS = {
    "chest_acc": 0.92,
    "chest_f1": 0.90,
    "chest_collapsed": 0.95,
    "brain_acc": 0.97,
    "brain_f1": 0.97,
    "router": 0.999,
    "ood": 0.99,
    "wrongly_refused": 0.005,
    "ece": 0.05,
}


def main() -> int:
    if not (DATASETS / "chest_xray" / "test").is_dir() or not (DATASETS / "brain_mri" / "test").is_dir():
        print(f"skipped: {DATASETS} has no chest_xray/test and brain_mri/test (the datasets live beside the checkout)")
        return 0
    import torch
    from PIL import Image

    from apps.diagnosis.pipeline import TwoStagePipeline, find_artifacts
    from apps.diagnosis.pipeline.negatives import DICOM_HELDOUT, generate
    from apps.diagnosis.pipeline.training import evaluate

    torch.set_num_threads(2)
    found = find_artifacts(WEIGHTS)
    pipe = TwoStagePipeline.from_directory(WEIGHTS)
    rows = {}
    for task, sub in (("chest", "chest_xray"), ("brain", "brain_mri")):
        t = time.time()
        rows[task] = evaluate(found[task], DATASETS / sub / "test")
        print(
            f"{task}: acc {rows[task]['accuracy']} macro-F1 {rows[task]['macro_f1']} ECE {rows[task]['ece']} "
            f"({time.time() - t:.0f}s)"
        )

    # Router, through the production decode path, on every real test image.
    routed, refused, total = 0, 0, 0
    for expected, sub in (("chest_xray", "chest_xray"), ("brain_mri", "brain_mri")):
        for path in sorted((DATASETS / sub / "test").rglob("*.jpg")):
            image = pipe.decode(path.read_bytes())
            probs = pipe.route(image.pixels)
            best = max(probs, key=probs.get)
            total += 1
            routed += best == expected
            refused += best != expected or probs[best] < pipe.min_confidence
    router_acc, wrongly_refused = routed / total, refused / total
    print(f"router: {routed}/{total} routed correctly ({router_acc:.4f}); wrongly refused {wrongly_refused:.4f}")

    # Held-out out-of-distribution images: generated from sources the router never saw, sent as PNG
    # bytes, plus pydicom's held-out DICOM files sent as the files themselves.
    negs, kinds = generate(800, 256, seed=4242, heldout=True)
    ood_refused, per_kind = 0, {}
    for arr, kind in zip(negs, kinds, strict=True):
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")
        result = pipe.run(buf.getvalue())
        ood_refused += result.refused
        ok, n = per_kind.get(kind, (0, 0))
        per_kind[kind] = (ok + result.refused, n + 1)
    dicom_files = _heldout_dicom_files(DICOM_HELDOUT)
    for path in dicom_files:
        try:
            result = pipe.run(path.read_bytes())
            refused_here = result.refused
        except Exception:  # noqa: BLE001 - an undecodable file is refused too
            refused_here = True
        ood_refused += refused_here
        ok, n = per_kind.get("dicom-file", (0, 0))
        per_kind["dicom-file"] = (ok + refused_here, n + 1)
    n_ood = len(negs) + len(dicom_files)
    ood_rate = ood_refused / n_ood
    print(f"OOD refused: {ood_refused}/{n_ood} ({ood_rate:.4f}); by kind {per_kind}")

    c, b = rows["chest"], rows["brain"]
    collapsed = c["extra"].get("pneumonia_vs_normal_accuracy")

    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    body = f"""## Accuracy (`benchmarks/accuracy.py`)

Machine: {machine()}. Weights: {", ".join(f"`{p.name}`" for p in found.values())}.

| figure | target | measured | |
|---|---|---|---|
| chest 3-class accuracy / macro-F1 (Kermany test, n={c["n"]}) | ≥ 0.92 / ≥ 0.90 | {c["accuracy"]:.4f} / {c["macro_f1"]:.4f} | {mark(c["accuracy"] >= 0.92 and c["macro_f1"] >= 0.90)} |
| chest pneumonia vs normal (collapsed) accuracy | ≥ 0.95 | {collapsed:.4f} | {mark(collapsed >= 0.95)} |
| brain 4-class accuracy / macro-F1 (test, n={b["n"]}) | ≥ 0.97 / ≥ 0.97 | {b["accuracy"]:.4f} / {b["macro_f1"]:.4f} | {mark(b["accuracy"] >= 0.97 and b["macro_f1"] >= 0.97)} |
| router accuracy on both test splits (n={total}) | ≥ 0.999 | {router_acc:.4f} | {mark(router_acc >= 0.999)} |
| out-of-distribution refused (held-out, n={n_ood}) | ≥ 0.99 | {ood_rate:.4f} | {mark(ood_rate >= 0.99)} |
| real test cases wrongly refused | ≤ 0.005 | {wrongly_refused:.4f} | {mark(wrongly_refused <= 0.005)} |
| ECE (15 bins), chest / brain | ≤ 0.05 | {c["ece"]:.4f} / {b["ece"]:.4f} | {mark(c["ece"] <= 0.05 and b["ece"] <= 0.05)} |

Per-class (precision / recall):

- chest: {", ".join(f"{k} {v['precision']:.3f}/{v['recall']:.3f}" for k, v in c["per_class"].items())}
- brain: {", ".join(f"{k} {v['precision']:.3f}/{v['recall']:.3f}" for k, v in b["per_class"].items())}

Confusion matrices (rows true, columns predicted): chest {json.dumps(c["confusion_matrix"])}, brain {json.dumps(b["confusion_matrix"])}.

Out-of-distribution refusals by kind (refused/total): {", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(per_kind.items()))}.
Held-out sources: scikit-image photos the router never trained on (astronaut, chelsea, coffee, rocket), pydicom files
it never trained on ({", ".join(DICOM_HELDOUT)}), and documents, screenshots and synthetic images drawn with seeds
it never saw.
"""
    write_section("accuracy", body)
    print("wrote docs/BENCHMARKS.md (accuracy section)")
    return 0


def _heldout_dicom_files(names):
    import os

    import pydicom.data

    root = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")
    from pathlib import Path

    return [p for n in names for p in Path(root).rglob(n)]


if __name__ == "__main__":
    sys.exit(main())
