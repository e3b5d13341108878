"""Formatting of the learning loop's figures in templates."""

from __future__ import annotations

from django import template

from apps.diagnosis.performance import Rate

register = template.Library()


@register.filter
def rate(value: Rate) -> str:
    """ "82% (74–88%)": the share with its 95% Wilson interval, or "—" without data."""
    if value.n == 0 or value.interval is None:
        return "—"
    low, high = value.interval
    return f"{value.successes / value.n:.0%} ({low:.0%}–{high:.0%})"


@register.filter
def milliseconds(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} ms"


@register.filter
def get_item(mapping: dict, key: object) -> object:
    """``mapping[key]`` in a template (an empty list when missing)."""
    return mapping.get(key, [])
