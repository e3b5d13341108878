"""Model artifacts: a folder with ``model.safetensors`` (fp16 weights) and ``card.json``.

The card is the registry entry of the weights (torchxrayvision-style): labels, input size,
preprocessing, thresholds, temperature, training config, data hash and test metrics. Every model
is a timm ``tf_efficientnet_lite0`` with a 1-channel stem, so all stages share one interface.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "card.json"
ARCH = "tf_efficientnet_lite0"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def build_model(num_classes: int, pretrained_file: str | None = None) -> torch.nn.Module:
    """The network every stage uses. ``pretrained_file``: ImageNet weights to start from."""
    import timm

    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": 1}
    if pretrained_file:
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(pretrained_file)})
    return timm.create_model(ARCH, **kwargs)


@dataclass
class Artifact:
    """Loaded weights plus their card. ``model`` is in eval mode, float32, channels-last."""

    task: str
    version: str
    sha256: str
    labels: list[str]
    input_size: int
    temperature: float
    thresholds: dict[str, float]
    card: dict[str, Any]
    model: torch.nn.Module
    path: Path
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def preprocessing(self) -> str:
        """The intensity preprocessing the weights were trained with (``preprocess.METHODS``)."""
        return str(self.card.get("preprocessing_method") or "none")

    @property
    def short_sha(self) -> str:
        return self.sha256[:12]


def load_artifact(path: str | Path) -> Artifact:
    from safetensors.torch import load_file

    path = Path(path)
    card = json.loads((path / CARD_FILE).read_text())
    weights = path / WEIGHTS_FILE
    labels = list(card["labels"])
    model = build_model(len(labels))
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("num_batches_tracked")]:
        raise ValueError(f"{weights}: weights do not match {ARCH} with {len(labels)} classes")
    model.eval().to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return Artifact(
        task=card["task"],
        version=card["version"],
        sha256=file_sha256(weights),
        labels=labels,
        input_size=int(card["input_size"]),
        temperature=float(card.get("temperature") or 1.0),
        thresholds={k: float(v) for k, v in (card.get("thresholds") or {}).items()},
        card=card,
        model=model,
        path=path,
    )


def find_artifacts(root: str | Path) -> dict[str, Path]:
    """The newest artifact folder per task under ``root/<task>/<version>/`` (by card version)."""
    newest: dict[str, tuple[str, Path]] = {}
    for card_path in sorted(Path(root).glob(f"*/*/{CARD_FILE}")):
        if not (card_path.parent / WEIGHTS_FILE).is_file():
            continue
        card = json.loads(card_path.read_text())
        task, version = card.get("task"), str(card.get("version", ""))
        if task and (task not in newest or version > newest[task][0]):
            newest[task] = (version, card_path.parent)
    return {task: p for task, (_, p) in newest.items()}
