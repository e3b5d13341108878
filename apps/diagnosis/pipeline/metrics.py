"""Classification metrics and model cards (JSON + Markdown + PNG plots)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, labels: list[str], bins: int = 15) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1, confusion matrix and ECE."""
    y_true = np.asarray(y_true)
    pred = probs.argmax(1)
    k = len(labels)
    cm = np.zeros((k, k), dtype=int)
    for t, p in zip(y_true, pred, strict=True):
        cm[t, p] += 1
    per_class = {}
    f1s = []
    for i, name in enumerate(labels):
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        fn = cm[i, :].sum() - tp
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        f1s.append(f1)
        per_class[name] = {
            "precision": round(float(precision), 4),
            "recall": round(float(recall), 4),
            "f1": round(float(f1), 4),
            "support": int(cm[i, :].sum()),
        }
    return {
        "n": int(len(y_true)),
        "accuracy": round(float((pred == y_true).mean()), 4),
        "macro_f1": round(float(np.mean(f1s)), 4),
        "ece": round(expected_calibration_error(y_true, probs, bins), 4),
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
        "labels": labels,
        "reliability": reliability_bins(y_true, probs, bins),
    }


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> list[dict[str, float]]:
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            out.append(
                {
                    "lo": round(float(lo), 3),
                    "hi": round(float(hi), 3),
                    "count": int(mask.sum()),
                    "confidence": round(float(conf[mask].mean()), 4),
                    "accuracy": round(float(correct[mask].mean()), 4),
                }
            )
    return out


def write_plots(folder: Path, metrics: dict[str, Any], title: str) -> None:
    """confusion.png and reliability.png (matplotlib is only needed at training time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = metrics["labels"]
    cm = np.array(metrics["confusion_matrix"])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j, i, str(cm[i, j]), ha="center", va="center", color="black" if cm[i, j] < cm.max() / 2 else "white"
            )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: confusion (test)")
    fig.tight_layout()
    fig.savefig(folder / "confusion.png", dpi=110)
    plt.close(fig)

    rel = metrics["reliability"]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], "--", color="grey")
    ax.bar([b["confidence"] for b in rel], [b["accuracy"] for b in rel], width=1 / 15, alpha=0.7, edgecolor="k")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title}: reliability, ECE {metrics['ece']:.3f}")
    fig.tight_layout()
    fig.savefig(folder / "reliability.png", dpi=110)
    plt.close(fig)


def write_card(folder: Path, card: dict[str, Any]) -> None:
    """card.json, card.md and, when test metrics exist, the two plots."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text(json.dumps(card, indent=2))
    test = card.get("test_metrics") or {}
    if test.get("confusion_matrix"):
        write_plots(folder, test, card["task"])
    (folder / "card.md").write_text(card_markdown(card))


def card_markdown(card: dict[str, Any]) -> str:
    t = card.get("test_metrics") or {}
    lines = [
        f"# Model card: {card['task']} `{card['version']}`",
        "",
        f"{card.get('description', '')}",
        "",
        "> Assistive, not a diagnosis. Outputs are suggestions for a clinician to confirm or correct.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | timm `{card.get('arch')}`, 1-channel stem, ImageNet-initialised |",
        f"| labels | {', '.join(card['labels'])} |",
        f"| input | {card['input_size']}×{card['input_size']} greyscale; {card.get('preprocessing', '')} |",
        f"| temperature (fitted on validation) | {card.get('temperature', 1.0):.3f} |",
        f"| thresholds | {json.dumps(card.get('thresholds', {}))} |",
        f"| feature-space check / refusal wording (`ood.safetensors`) | {json.dumps(card.get('ood', {}))} |",
        f"| weights | `model.safetensors` (fp16), sha256 `{card.get('weights_sha256', '')[:16]}…` |",
        f"| data manifest sha256 | `{card.get('data_manifest_sha256', '')[:16]}…` |",
        f"| training | {json.dumps(card.get('training', {}))} |",
        "",
    ]
    if t:
        lines += [
            f"## Test metrics ({t.get('n')} images, official test split, evaluated once)",
            "",
            f"accuracy **{t['accuracy']:.4f}**, macro-F1 **{t['macro_f1']:.4f}**, ECE (15 bins) **{t['ece']:.4f}**",
            "",
        ]
        for key, value in (card.get("extra_test_metrics") or {}).items():
            lines.append(f"- {key}: **{value}**")
        lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for name, m in t["per_class"].items():
            lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
        lines += [
            "",
            "Confusion matrix (rows true, columns predicted): " + json.dumps(t["confusion_matrix"]),
            "",
            "![confusion](confusion.png) ![reliability](reliability.png)",
            "",
        ]
    v = card.get("validation_metrics") or {}
    if v:
        lines += [
            f"Validation (carved from train): accuracy {v.get('accuracy')}, macro-F1 {v.get('macro_f1')}, "
            f"ECE {v.get('ece')}",
            "",
        ]
    for note in card.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"
