"""Everything the reports app needs from the diagnosis app, in one place.

The review screen, the signed-report snapshot and the PDF all read the AI result through these
functions, so the reports app depends on a handful of names from ``apps.diagnosis`` and nothing
else. Labels are shown to people through ``display_label``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.studies.models import Study

#: The specialists' classes (see ARCHITECTURE.md), used when the diagnosis app has none to offer.
SPECIALIST_LABELS: dict[str, tuple[str, ...]] = {
    "chest_xray": ("normal", "bacterial_pneumonia", "viral_pneumonia"),
    "brain_mri": ("glioma", "meningioma", "no_tumor", "pituitary"),
}

_DISPLAY = {
    "normal": "Normal",
    "bacterial_pneumonia": "Bacterial pneumonia",
    "viral_pneumonia": "Viral pneumonia",
    "glioma": "Glioma",
    "meningioma": "Meningioma",
    "no_tumor": "No tumour",
    "pituitary": "Pituitary tumour",
    "chest_xray": "Chest X-ray",
    "brain_mri": "Brain MRI",
    "chest": "Chest X-ray",
    "brain": "Brain MRI",
    "unsupported": "Unsupported image",
}


def display_label(code: str | None) -> str:
    """A label as people read it: ``bacterial_pneumonia`` → "Bacterial pneumonia"; free text as is."""
    if not code:
        return ""
    if code in _DISPLAY:
        return _DISPLAY[code]
    if code.islower() and " " not in code:  # another machine label: pleural_effusion → Pleural effusion
        text = code.replace("_", " ")
        return text[:1].upper() + text[1:]
    return code


def _task_key(task: str | None) -> str:
    """Normalise a task name ("chest", "chest_xray") to the modality key of SPECIALIST_LABELS."""
    if not task:
        return ""
    if task.startswith("chest"):
        return "chest_xray"
    if task.startswith("brain"):
        return "brain_mri"
    return task


def labels_for(task: str | None, diagnosis: Any | None = None) -> list[tuple[str, str]]:
    """(code, display) of the specialist's classes for ``task``: the labels of the model version
    that read the study when known, else the specialist's standard classes, else all of them."""
    version = getattr(diagnosis, "specialist_version", None) if diagnosis is not None else None
    codes: tuple[str, ...] = tuple(getattr(version, "labels", None) or ())
    if not codes:
        key = _task_key(task)
        codes = SPECIALIST_LABELS.get(key) or tuple(c for group in SPECIALIST_LABELS.values() for c in group)
    return [(code, display_label(code)) for code in codes]


def latest(study: Study) -> Any | None:
    """The study's newest Diagnosis, or None (no AI read yet, or the diagnosis app is absent)."""
    try:
        from apps.diagnosis.services import latest_diagnosis
    except ImportError:
        return None
    return latest_diagnosis(study)


@dataclass
class Probability:
    code: str
    label: str
    value: float

    @property
    def percent(self) -> int:
        return round(self.value * 100)


@dataclass
class AIResult:
    """The AI read of one study, as the review screen, the PDF and the timeline show it."""

    diagnosis: Any
    task: str = ""
    label: str = ""
    confidence: float | None = None
    probabilities: list[Probability] = field(default_factory=list)
    model_version: str = ""
    refused: bool = False
    refusal_reason: str = ""
    modality_warning: str = ""
    roi_box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 as fractions of the image
    has_overlay: bool = False

    @property
    def label_display(self) -> str:
        return display_label(self.label)

    @property
    def task_display(self) -> str:
        return display_label(self.task)

    @property
    def confidence_percent(self) -> int | None:
        return None if self.confidence is None else round(self.confidence * 100)

    @property
    def roi_style(self) -> str:
        """CSS placing the ROI box over the image (percentages, so it scales with the image)."""
        if not self.roi_box:
            return ""
        x0, y0, x1, y1 = self.roi_box
        return f"left:{x0 * 100:.2f}%;top:{y0 * 100:.2f}%;width:{(x1 - x0) * 100:.2f}%;height:{(y1 - y0) * 100:.2f}%"


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(obj, name, None)
        if value not in (None, ""):
            return value
    return default


def _roi_fractions(diagnosis: Any, study: Study | None) -> tuple[float, float, float, float] | None:
    box = _get(diagnosis, "roi_box", "box", "roi")
    if not box:
        return None
    if isinstance(box, dict):
        try:
            x0, y0 = float(box.get("x0", box.get("x", 0))), float(box.get("y0", box.get("y", 0)))
            if "x1" in box:
                x1, y1 = float(box["x1"]), float(box["y1"])
            else:
                x1, y1 = x0 + float(box.get("width", box.get("w", 0))), y0 + float(box.get("height", box.get("h", 0)))
        except (TypeError, ValueError):
            return None
    else:
        try:
            x0, y0, x1, y1 = (float(v) for v in box)
        except (TypeError, ValueError):
            return None
    if max(x0, y0, x1, y1) > 1.0:  # pixel coordinates: scale by the original image size
        width = _get(diagnosis, "image_width", "width") or (study.width if study else None)
        height = _get(diagnosis, "image_height", "height") or (study.height if study else None)
        if not width or not height:
            return None
        x0, x1 = x0 / width, x1 / width
        y0, y1 = y0 / height, y1 / height
    x0, y0 = max(0.0, min(x0, 1.0)), max(0.0, min(y0, 1.0))
    x1, y1 = max(x0, min(x1, 1.0)), max(y0, min(y1, 1.0))
    return (x0, y0, x1, y1)


def _model_version(diagnosis: Any) -> str:
    """ "chest 2026-11-22 (weights 1a2b3c4d5e6f) · router …": what a signed report must name."""
    parts = []
    for fk, sha in (("specialist_version", "specialist_sha256"), ("router_version", "router_sha256")):
        version = getattr(diagnosis, fk, None)
        if version is None:
            continue
        digest = (getattr(diagnosis, sha, "") or getattr(version, "weights_sha256", ""))[:12]
        parts.append(f"{version}" + (f" (weights {digest})" if digest else ""))
    return " · ".join(parts)


def result(study: Study, diagnosis: Any | None = None) -> AIResult | None:
    """The study's AI read, shaped for display; None when there is none."""
    diagnosis = diagnosis if diagnosis is not None else latest(study)
    if diagnosis is None:
        return None
    probs = _get(diagnosis, "probabilities", default={}) or {}
    if isinstance(probs, dict) and isinstance(probs.get("specialist"), dict):
        probs = probs["specialist"]
    probabilities = sorted(
        (
            Probability(code=str(k), label=display_label(str(k)), value=float(v))
            for k, v in probs.items()
            if isinstance(v, int | float)
        ),
        key=lambda p: -p.value,
    )
    label = _get(diagnosis, "label", default="") or ""
    confidence = _get(diagnosis, "confidence")
    if confidence is None and label and probs.get(label) is not None:
        confidence = float(probs[label])
    return AIResult(
        diagnosis=diagnosis,
        task=str(_get(diagnosis, "task", default="") or ""),
        label=str(label),
        confidence=float(confidence) if confidence is not None else None,
        probabilities=probabilities,
        model_version=_model_version(diagnosis),
        refused=bool(_get(diagnosis, "refused", default=False)),
        refusal_reason=str(_get(diagnosis, "refusal_reason", default="") or ""),
        modality_warning=str(_get(diagnosis, "modality_warning", default="") or ""),
        roi_box=_roi_fractions(diagnosis, study),
        has_overlay=bool(_get(diagnosis, "overlay_name", "overlay_file_name")),
    )


def snapshot(study: Study) -> dict[str, Any]:
    """The ai_* fields a signed report keeps, so it never changes when models do."""
    res = result(study)
    if res is None:
        return {
            "ai_task": "",
            "ai_label": "",
            "ai_confidence": None,
            "ai_model_version": "",
            "ai_refused": False,
            "ai_note": "",
        }
    return {
        "ai_task": res.task[:40],
        "ai_label": res.label[:60],
        "ai_confidence": res.confidence,
        "ai_model_version": res.model_version[:120],
        "ai_refused": res.refused,
        "ai_note": (res.refusal_reason or res.modality_warning)[:500],
    }


def overlay_png(diagnosis: Any) -> bytes | None:
    """The decrypted Grad-CAM overlay PNG of a diagnosis, or None if it has none."""
    from apps.studies.storage import read_encrypted

    name = _get(diagnosis, "overlay_name", "overlay_file_name")
    sha = _get(diagnosis, "overlay_sha256", "overlay_file_sha256")
    if not name or not sha:
        return None
    return read_encrypted(name, sha)
