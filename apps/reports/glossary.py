"""Plain-language explanations of report terms, for the patient's report page and the PDF.

The words live in one data file, ``glossary.json`` (term → explanation), so that they can be
reviewed and extended without touching code. ``terms_in`` finds the terms a report uses: the
longest phrase wins ("bilateral perihilar interstitial opacities" is explained once, as a
whole, not word by word), matching ignores case and only takes whole words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

GLOSSARY_FILE = Path(__file__).with_name("glossary.json")


@dataclass(frozen=True)
class Term:
    term: str
    explanation: str


@cache
def glossary() -> dict[str, str]:
    """The glossary's terms (lower case) and explanations."""
    data = json.loads(GLOSSARY_FILE.read_text(encoding="utf-8"))
    return {term.lower(): text for term, text in data["terms"].items()}


@cache
def _pattern() -> re.Pattern[str]:
    # Longest first: at each position the regex takes the first alternative that matches.
    terms = sorted(glossary(), key=lambda t: (-len(t), t))
    return re.compile(r"(?<![\w-])(" + "|".join(re.escape(t) for t in terms) + r")(?![\w-])", re.IGNORECASE)


def terms_in(*texts: str) -> list[Term]:
    """The glossary terms found in ``texts``, in the order they first appear, each once."""
    found: dict[str, Term] = {}
    words = glossary()
    for text in texts:
        for match in _pattern().finditer(text or ""):
            key = match.group(1).lower()
            if key not in found:
                found[key] = Term(term=key[:1].upper() + key[1:], explanation=words[key])
    return list(found.values())
