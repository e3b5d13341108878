"""A signed report as a patient reads it: the doctor's conclusion first, then the AI second
read in plain words, and the glossary terms the report uses. The patient's report page and the
PDF both build on ``patient_summary`` so the two never say different things.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from apps.diagnosis.models import candidates_phrase
from apps.studies.models import Modality, Study

from .ai import display_label
from .glossary import Term, terms_in
from .models import Report

#: Shown when the doctor's final label is not the AI's suggestion.
DIFFERENT_CONCLUSION = "Your doctor reviewed the AI suggestion and reached a different conclusion."
#: The heading of the AI's part, on the page and in the PDF.
AI_SECTION_TITLE = "AI second read (assistive)"


def study_type(study: Study) -> str:
    """ "Chest X-ray", "Brain MRI", or "Imaging" when the type is unknown or unsupported."""
    if study.modality in (Modality.CHEST_XRAY, Modality.BRAIN_MRI):
        return study.get_modality_display()
    return "Imaging"


@dataclass(frozen=True)
class AISecondRead:
    """What the AI said at signing (the report's snapshot, never today's model)."""

    kind: str  # "none" | "refused" | "indeterminate" | "label"
    label: str = ""  # "Bacterial pneumonia", or "Indeterminate: bacterial or viral pneumonia"
    confidence_percent: int | None = None
    candidates: str = ""  # "bacterial and viral pneumonia", for an indeterminate read
    note: str = ""  # refusal reason or modality warning
    differs: bool = False  # a label the doctor did not conclude


@dataclass(frozen=True)
class PatientSummary:
    conclusion: str
    ai: AISecondRead
    terms: list[Term] = field(default_factory=list)


def ai_second_read(report: Report) -> AISecondRead:
    if report.ai_refused:
        return AISecondRead(kind="refused", note=report.ai_note)
    if report.ai_indeterminate:
        return AISecondRead(
            kind="indeterminate",
            label=report.ai_label_display,
            candidates=candidates_phrase(report.ai_candidates, "and"),
            note=report.ai_note,
        )
    if not report.ai_label:
        return AISecondRead(kind="none")
    return AISecondRead(
        kind="label",
        label=report.ai_label_display,
        confidence_percent=None if report.ai_confidence is None else round(report.ai_confidence * 100),
        note=report.ai_note,
        differs=bool(report.final_label) and report.final_label != report.ai_label,
    )


def patient_summary(report: Report) -> PatientSummary:
    conclusion = display_label(report.final_label)
    ai = ai_second_read(report)
    terms = terms_in(conclusion, report.impression, report.findings, ai.label)
    return PatientSummary(conclusion=conclusion, ai=ai, terms=terms)
