"""One way to send a stored, encrypted file: ``serve_encrypted``.

Every download of patient data goes through it: the study image on the study page and through
the API, the Grad-CAM heatmap, the signed report's PDF. The caller has already checked access
(the access helpers answer 404 for what the user may not see); this helper reads the file,
checks it and answers the same way everywhere:

* **200**: the bytes, with ``Content-Type``, ``Content-Disposition`` (``inline`` for what a page
  shows, ``attachment`` for a download, an escaped file name), ``Cache-Control: private,
  no-store`` (no copy in shared or browser caches) and ``X-Content-Type-Options: nosniff``; the
  audit event ``action`` is written.
* **409** when the stored file is missing, does not decrypt or does not match the SHA-256 recorded
  when it was stored. The row exists but its file is not the one that was stored: a conflict
  between the record and the storage, which the client did not cause and a retry will not heal.
  Nothing of the file is sent; the body says so in plain words (``{"error": …}`` for the API);
  ``<kind>.integrity_error`` is audited and the error logged for the administrator.
* **422** when a file that was read and verified cannot be rendered for display (``render``: a
  DICOM shown as PNG on the study page).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import models
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.http import content_disposition_header

from apps.accounts import audit
from apps.accounts.models import Hospital

from .models import SourceFormat, Study
from .rendering import dicom_display_png
from .storage import TamperedFileError, read_encrypted

log = logging.getLogger(__name__)

#: The status of a stored file that fails its integrity check (see the module docstring).
INTEGRITY_STATUS = 409
#: The status of a verified file that cannot be rendered for display.
UNDISPLAYABLE_STATUS = 422


def integrity_message(what: str) -> str:
    return f"The stored {what} failed its integrity check, so it was not sent. Please contact your administrator."


def serve_encrypted(
    request: HttpRequest,
    *,
    stored_name: str,
    stored_sha256: str,
    what: str,
    content_type: str,
    filename: str,
    inline: bool,
    hospital: Hospital,
    obj: models.Model,
    action: str,
    render: Callable[[bytes], tuple[bytes, str]] | None = None,
    json_errors: bool = False,
    error_page: Callable[[str], HttpResponse] | None = None,
    **detail: Any,
) -> HttpResponse:
    """Send the stored file ``stored_name`` (plaintext SHA-256 ``stored_sha256``) as ``filename``.

    ``what`` names the file for people ("image", "heatmap", "report PDF"); ``action`` is the audit
    event of a successful download (``study.download``) and its first part names the integrity
    event (``study.integrity_error``); ``detail`` goes into both events. ``render`` turns the
    verified bytes into ``(body, content_type)`` for display. A refusal is plain text, JSON with
    ``json_errors`` (the API), or ``error_page(message)`` (a page; it is sent with status 409).
    """
    try:
        data = read_encrypted(stored_name, stored_sha256)
    except (TamperedFileError, OSError) as exc:  # OSError: missing or unreadable in the storage
        log.error("Stored %s %r of %s %s cannot be served: %s", what, stored_name, obj._meta.label, obj.pk, exc)
        kind = action.split(".", 1)[0]
        audit.record(
            f"{kind}.integrity_error",
            hospital=hospital,
            actor=request.user,
            obj=obj,
            request=request,
            file=what,
            error=str(exc)[:200],
            **detail,
        )
        return _refusal(integrity_message(what), INTEGRITY_STATUS, json_errors, error_page)
    if render is not None:
        try:
            data, content_type = render(data)
        except Exception:  # noqa: BLE001 - a display problem must not become an error page
            log.exception("Could not render %s of %s %s for display", what, obj._meta.label, obj.pk)
            message = f"This {what} cannot be displayed."
            return _refusal(message, UNDISPLAYABLE_STATUS, json_errors, error_page)
    audit.record(action, hospital=hospital, actor=request.user, obj=obj, request=request, **detail)
    response = HttpResponse(data, content_type=content_type)
    disposition = content_disposition_header(not inline, filename)
    assert disposition is not None  # None only for an inline response without a file name
    response["Content-Disposition"] = disposition
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _refusal(
    message: str, status: int, json_errors: bool, error_page: Callable[[str], HttpResponse] | None
) -> HttpResponse:
    if json_errors:
        response: HttpResponse = JsonResponse({"error": message}, status=status)
    elif error_page is not None:
        response = error_page(message)
        response.status_code = status
    else:
        response = HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    return response


def serve_study_image(
    request: HttpRequest, study: Study, *, hospital: Hospital, obj: models.Model, action: str
) -> HttpResponse:
    """The study's image as a page shows it, inline: a PNG or JPEG as stored, a DICOM as a
    windowed PNG. Used by the study page (staff) and the patient's report page (``obj`` is then
    the report the patient may read, and ``action`` its own audit event)."""
    dicom = study.source_format == SourceFormat.DICOM
    content_type = "image/png" if study.source_format == SourceFormat.PNG else "image/jpeg"
    return serve_encrypted(
        request,
        stored_name=study.file_name,
        stored_sha256=study.file_sha256,
        what="DICOM image" if dicom else "image",
        content_type=content_type,
        filename=f"study-{study.pk}.{'png' if dicom or content_type == 'image/png' else 'jpg'}",
        inline=True,
        hospital=hospital,
        obj=obj,
        action=action,
        render=(lambda data: (dicom_display_png(data), "image/png")) if dicom else None,
    )
