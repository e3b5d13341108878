"""Template filters of the reports app."""

from __future__ import annotations

from django import template

from apps.studies.models import Study, StudyStatus

from ..ai import display_label
from ..plain import study_type

register = template.Library()


@register.filter(name="label")
def label_filter(code: str | None) -> str:
    """A label as people read it: ``{{ fb.corrected_label|label }}`` → "Viral pneumonia"."""
    return display_label(code)


@register.filter(name="status_label")
def status_label_filter(code: str) -> str:
    """A study status as people read it: ``{{ "unsure"|status_label }}`` → "AI unsure"."""
    return str(StudyStatus(code).label)


@register.filter(name="study_type")
def study_type_filter(study: Study) -> str:
    """ "Chest X-ray", "Brain MRI" or "Imaging": ``{{ report.study|study_type }} report``."""
    return study_type(study)
