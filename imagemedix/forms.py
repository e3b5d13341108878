"""Form conventions shared by every app's forms."""

from __future__ import annotations

from typing import Any

from django.forms.utils import ErrorList


class NamedErrorsMixin:
    """Every field error names its field: "Impression: this field is required." rather than
    Django's bare "This field is required.", so the error summary at the top of a page
    (templates/_error_summary.html) and a screen reader say which field each message is about.
    A message that already starts with the field's label is kept as it is."""

    # A mixin for forms.Form: mypy checks it without its base, hence the ignores below.
    def add_error(self, field: str | None, error: Any) -> None:
        """A message added by a view or ``clean()`` names its field too."""
        if field and isinstance(error, str) and field in self.fields:  # type: ignore[attr-defined]
            error = _named(self._label(field), error)
        super().add_error(field, error)  # type: ignore[misc]

    def _label(self, name: str) -> str:
        field = self.fields[name]  # type: ignore[attr-defined]
        return str(field.label or name.replace("_", " ").capitalize())

    def full_clean(self) -> None:
        super().full_clean()  # type: ignore[misc]
        errors = self._errors  # type: ignore[attr-defined]
        if not errors:
            return
        for name in list(errors):
            if name not in self.fields:  # type: ignore[attr-defined]
                continue  # non-field errors
            errors[name] = ErrorList([_named(self._label(name), str(message)) for message in errors[name]])


def _named(label: str, message: str) -> str:
    if message.lower().startswith(label.lower()):
        return message
    return f"{label}: {message[:1].lower()}{message[1:]}"


def error_items(*forms: Any) -> list[dict[str, str]]:
    """The errors of ``forms`` for the error summary: {"message", "target"} with the id of the
    field (or "" for a form-wide error), in the order of the fields."""
    items = []
    for form in forms:
        if form is None or not form.errors:
            continue
        for message in form.non_field_errors():
            items.append({"message": message, "target": ""})
        for field in form:
            for message in field.errors:
                items.append({"message": message, "target": field.id_for_label or ""})
    return items
