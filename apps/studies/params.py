"""Strict parsing of ids that arrive as text (query strings, form fields).

``str.isdigit()`` accepts Unicode digits such as "²" that ``int()`` then refuses (a 500), and
``int()`` accepts ids far beyond PostgreSQL's bigint. An id here is 1 to 18 ASCII digits, above 0.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

#: 18 digits always fit PostgreSQL's bigint (max 9223372036854775807, 19 digits).
MAX_ID_DIGITS = 18


def parse_id(raw: str, what: str) -> int:
    """``raw`` as a database id, or ``ValidationError`` saying that ``what`` is not a valid id."""
    text = raw.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_ID_DIGITS and int(text) > 0):
        raise ValidationError(f"The {what} must be given as a positive whole number (an id), not {text[:20]!r}.")
    return int(text)
