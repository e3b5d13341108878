"""Helpers for diagnosis tests (and the route table): registry rows and stored AI reads made
without running the networks, so tests that are about storage, access or feedback stay fast."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from django_scopes import scopes_disabled
from PIL import Image

from apps.accounts.tenancy import tenant_scope
from apps.diagnosis import services
from apps.diagnosis.models import Diagnosis, ModelVersion
from apps.studies.models import Study
from apps.studies.storage import store_encrypted

CHEST_LABELS = ["normal", "bacterial_pneumonia", "viral_pneumonia"]
BRAIN_LABELS = ["glioma", "meningioma", "no_tumor", "pituitary"]
ROUTER_LABELS = ["chest_xray", "brain_mri", "unsupported"]
LABELS = {"router": ROUTER_LABELS, "chest": CHEST_LABELS, "brain": BRAIN_LABELS}


def read_now(study: Study, **options: Any) -> Diagnosis | None:
    """Run the AI read of ``study`` here and now, in its hospital's scope as the task does."""
    with tenant_scope(study.hospital_id):
        return services.run_diagnosis(study.pk, **options)


def task_ids(study: Study) -> dict[str, int]:
    """The keyword ids ``diagnose_study`` is sent for ``study``."""
    return {"hospital_id": study.hospital_id, "study_id": study.pk}


def fake_version(task: str, version: str = "test-fixture", **fields: Any) -> ModelVersion:
    """A registry row that points at no real weights (inactive unless told otherwise)."""
    defaults = {
        "weights_sha256": hashlib.sha256(f"{task}:{version}".encode()).hexdigest(),
        "artifact_path": f"{task}/{version}",
        "labels": LABELS[task],
        "metrics": {"accuracy": 0.9},
    }
    defaults.update(fields)
    mv, _ = ModelVersion.objects.get_or_create(task=task, version=version, defaults=defaults)
    return mv


def overlay_png(size: tuple[int, int] = (32, 32)) -> bytes:
    arr = np.zeros((size[1], size[0], 3), dtype="uint8")
    arr[..., 0] = 200
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def heatmap_png(size: tuple[int, int] = (6, 6)) -> bytes:
    """A Grad-CAM map as the pipeline stores it: 8-bit greyscale at the network's resolution,
    hottest in the top-left corner."""
    ys, xs = np.mgrid[0 : size[1], 0 : size[0]]
    levels = (255 * (1 - (xs + ys) / (size[0] + size[1] - 2))).round().astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(levels, "L").save(buf, format="PNG")
    return buf.getvalue()


#: An indeterminate chest read: the specialist hesitates between bacterial and viral pneumonia.
UNSURE_PROBABILITIES = {"normal": 0.04, "bacterial_pneumonia": 0.49, "viral_pneumonia": 0.47}


def make_diagnosis(
    study: Study,
    *,
    label: str = "bacterial_pneumonia",
    refused: bool = False,
    refusal_code: str = "",
    refusal_reason: str = "it looks like a photograph",
    indeterminate: bool = False,
    candidates: tuple[str, ...] = ("bacterial_pneumonia", "viral_pneumonia"),
) -> Diagnosis:
    """A stored chest AI read of ``study`` (or a refusal, or an indeterminate read with no ROI
    box), with an encrypted overlay."""
    with scopes_disabled():
        router = fake_version("router")
        chest = None if refused else fake_version("chest")
        if refused:
            probs = {}
        elif indeterminate:
            probs = dict(UNSURE_PROBABILITIES)
            label = candidates[0]
        else:
            probs = {k: (0.8 if k == label else 0.1) for k in CHEST_LABELS}
        folder = f"diagnoses/h{study.hospital_id}"
        blob = None if refused else store_encrypted(overlay_png(), folder=folder, suffix=".png")
        heat = None if refused else store_encrypted(heatmap_png(), folder=folder, suffix=".png")
        return Diagnosis.objects.create(
            hospital_id=study.hospital_id,
            study=study,
            route="unsupported" if refused else "chest_xray",
            route_probabilities={"chest_xray": 0.98, "brain_mri": 0.01, "unsupported": 0.01},
            refused=refused,
            refusal_code=refusal_code if refused else "",
            refusal_reason=refusal_reason if refused else "",
            task="" if refused else "chest",
            label="" if refused else label,
            probabilities=probs,
            indeterminate=indeterminate and not refused,
            candidates=list(candidates) if indeterminate and not refused else [],
            overlay_name=blob.name if blob else "",
            overlay_sha256=blob.sha256 if blob else "",
            overlay_key_id=blob.key_id if blob else "",
            heatmap_name=heat.name if heat else "",
            heatmap_sha256=heat.sha256 if heat else "",
            heatmap_key_id=heat.key_id if heat else "",
            roi_box=None if refused or indeterminate else [4, 4, 20, 20],
            router_version=router,
            router_sha256=router.weights_sha256,
            specialist_version=chest,
            specialist_sha256=chest.weights_sha256 if chest else "",
            versions_key=f"{router.pk}:{chest.pk if chest else '-'}",
            timings_ms={"decode": 2.0, "router": 5.0, "specialist": 9.0},
        )


def write_fake_artifact(root: Path, task: str, version: str, *, card: dict[str, Any] | None = None) -> Path:
    """An artifact folder with a card and (fake) weights bytes, as training writes it."""
    folder = root / task / version
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(f"weights of {task} {version}".encode())
    payload = {
        "task": task,
        "version": version,
        "labels": LABELS[task],
        "thresholds": {"min_confidence": 0.6},
        "temperature": 1.3,
        "test_metrics": {"accuracy": 0.95, "macro_f1": 0.94},
    }
    payload.update(card or {})
    (folder / "card.json").write_text(json.dumps(payload))
    return folder


def write_untrained_artifact(root: Path, task: str, version: str = "untrained", *, favour: int | None = None) -> Path:
    """A REAL, loadable artifact (the pipeline's network, saved as fp16 safetensors with a card)
    with untrained weights; ``favour`` biases the classifier towards one class so the outcome
    is known (e.g. the router says chest_xray). For tests that need the real pipeline end to
    end without the shipped weights."""
    import torch
    from safetensors.torch import save_file

    from apps.diagnosis.pipeline.artifact import build_model

    torch.manual_seed(0)
    labels = LABELS[task]
    model = build_model(len(labels))
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in model.state_dict().items()}
    if favour is not None:
        bias_key = next(k for k in state if k.endswith("classifier.bias"))
        bias = torch.zeros(len(labels), dtype=torch.float16)
        bias[favour] = 20.0
        state[bias_key] = bias
    folder = root / task / version
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))
    card = {
        "task": task,
        "version": version,
        "labels": labels,
        "input_size": 64,
        "temperature": 1.0,
        "thresholds": {"min_confidence": 0.5},
        "test_metrics": {"accuracy": 0.0},
        "note": "untrained test artifact",
    }
    (folder / "card.json").write_text(json.dumps(card))
    return folder


def write_untrained_models(root: Path) -> dict[str, Path]:
    """Router (always says chest_xray) + chest + brain untrained artifacts under ``root``."""
    return {
        "router": write_untrained_artifact(root, "router", favour=0),
        "chest": write_untrained_artifact(root, "chest", favour=1),
        "brain": write_untrained_artifact(root, "brain"),
    }
