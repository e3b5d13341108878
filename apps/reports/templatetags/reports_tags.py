"""Template filters of the reports app."""

from __future__ import annotations

from django import template

from ..ai import display_label

register = template.Library()


@register.filter(name="label")
def label_filter(code: str | None) -> str:
    """A label as people read it: ``{{ fb.corrected_label|label }}`` → "Viral pneumonia"."""
    return display_label(code)
