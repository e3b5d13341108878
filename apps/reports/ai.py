"""Everything the reports app needs from the diagnosis app, in one place.

The review screen, the signed-report snapshot and the PDF all read the AI result through these
functions, so the reports app depends on a handful of names from ``apps.diagnosis`` and nothing
else. Labels are shown to people through ``display_label``; an indeterminate read through
``apps.diagnosis.models.indeterminate_display`` ("Indeterminate: bacterial or viral pneumonia").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.diagnosis.models import Diagnosis, candidates_phrase, indeterminate_display
from apps.diagnosis.services import latest_diagnosis
from apps.studies.models import Study
from apps.studies.storage import read_encrypted

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


def labels_for(task: str | None, diagnosis: Diagnosis | None = None) -> list[tuple[str, str]]:
    """(code, display) of the specialist's classes for ``task``: the labels of the model version
    that read the study when known, else the specialist's standard classes, else all of them."""
    version = diagnosis.specialist_version if diagnosis is not None else None
    codes: tuple[str, ...] = tuple(version.labels or ()) if version is not None else ()
    if not codes:
        key = _task_key(task)
        codes = SPECIALIST_LABELS.get(key) or tuple(c for group in SPECIALIST_LABELS.values() for c in group)
    return [(code, display_label(code)) for code in codes]


def latest(study: Study) -> Diagnosis | None:
    """The study's newest Diagnosis, or None (no AI read yet)."""
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
    """The AI read of one study, as the review screen, the PDF and the timeline show it.

    An ``indeterminate`` read keeps its top class in ``label`` (for the record) but shows
    ``label_display`` = "Indeterminate: …" and has no ``confidence``.
    """

    diagnosis: Diagnosis
    task: str = ""
    label: str = ""
    confidence: float | None = None
    probabilities: list[Probability] = field(default_factory=list)
    model_version: str = ""
    refused: bool = False
    refusal_code: str = ""
    refusal_reason: str = ""
    modality_warning: str = ""
    indeterminate: bool = False
    candidates: list[str] = field(default_factory=list)
    has_overlay: bool = False

    @property
    def label_display(self) -> str:
        if self.indeterminate:
            return indeterminate_display(self.candidates)
        return display_label(self.label)

    @property
    def candidates_display(self) -> str:
        """ "bacterial and viral pneumonia", for "The AI could not decide between …"."""
        return candidates_phrase(self.candidates, "and") if self.indeterminate else ""

    @property
    def suggested_label(self) -> str:
        """The label the AI suggests to the doctor: none when refused or indeterminate."""
        return "" if self.refused or self.indeterminate else self.label

    @property
    def task_display(self) -> str:
        return display_label(self.task)

    @property
    def confidence_percent(self) -> int | None:
        return None if self.confidence is None else round(self.confidence * 100)


def _model_version(diagnosis: Diagnosis) -> str:
    """ "chest 2026-11-22 (weights 1a2b3c4d5e6f) · router …": what a signed report must name."""
    parts = []
    for version, sha in (
        (diagnosis.specialist_version, diagnosis.specialist_sha256),
        (diagnosis.router_version, diagnosis.router_sha256),
    ):
        if version is None:
            continue
        digest = (sha or version.weights_sha256)[:12]
        parts.append(f"{version}" + (f" (weights {digest})" if digest else ""))
    return " · ".join(parts)


def result(study: Study, diagnosis: Diagnosis | None = None) -> AIResult | None:
    """The study's AI read, shaped for display; None when there is none."""
    diagnosis = diagnosis if diagnosis is not None else latest(study)
    if diagnosis is None:
        return None
    probabilities = sorted(
        (
            Probability(code=str(k), label=display_label(str(k)), value=float(v))
            for k, v in (diagnosis.probabilities or {}).items()
            if isinstance(v, int | float)
        ),
        key=lambda p: -p.value,
    )
    return AIResult(
        diagnosis=diagnosis,
        task=diagnosis.task,
        label=diagnosis.label,
        confidence=diagnosis.confidence,
        probabilities=probabilities,
        model_version=_model_version(diagnosis),
        refused=diagnosis.refused,
        refusal_code=diagnosis.refusal_code,
        refusal_reason=diagnosis.refusal_reason,
        modality_warning=diagnosis.modality_warning,
        indeterminate=diagnosis.indeterminate,
        candidates=[str(c) for c in diagnosis.candidates or []],
        has_overlay=diagnosis.has_overlay,
    )


def snapshot(study: Study) -> dict[str, Any]:
    """The ai_* fields a signed report keeps, so it never changes when models do."""
    res = result(study)
    if res is None:
        return {
            "ai_task": "",
            "ai_label": "",
            "ai_confidence": None,
            "ai_indeterminate": False,
            "ai_candidates": [],
            "ai_model_version": "",
            "ai_refused": False,
            "ai_note": "",
        }
    return {
        "ai_task": res.task[:40],
        "ai_label": res.label[:60],
        "ai_confidence": res.confidence,
        "ai_indeterminate": res.indeterminate,
        "ai_candidates": res.candidates,
        "ai_model_version": res.model_version[:120],
        "ai_refused": res.refused,
        "ai_note": (res.refusal_reason or res.modality_warning)[:500],
    }


def overlay_png(diagnosis: Diagnosis) -> bytes | None:
    """The decrypted Grad-CAM overlay PNG of a diagnosis, or None if it has none."""
    if not diagnosis.overlay_name or not diagnosis.overlay_sha256:
        return None
    return read_encrypted(diagnosis.overlay_name, diagnosis.overlay_sha256)
