"""DICOMweb wire formats (DICOM PS3.18): the multipart/related bodies of STOW-RS and WADO-RS, and
the DICOM JSON datasets of the STOW-RS response and of QIDO-RS results.

The multipart parsing is the standard library's MIME parser (``email``), which reports a body
without its boundaries as a defect instead of guessing; DICOM JSON comes from pydicom's
``Dataset.to_json_dict``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from email import errors as email_errors
from email import policy
from email.parser import BytesParser
from typing import Any

from django.utils.http import parse_header_parameters

DICOM_MEDIA_TYPE = "application/dicom"
DICOM_JSON_MEDIA_TYPE = "application/dicom+json"
MAX_BOUNDARY = 200

#: Defects that mean "this is not a well-formed multipart body" (the parts cannot be trusted).
_FATAL_DEFECTS = (
    email_errors.StartBoundaryNotFoundDefect,
    email_errors.CloseBoundaryNotFoundDefect,
    email_errors.MultipartInvariantViolationDefect,
    email_errors.NoBoundaryInMultipartDefect,
)


class BadRequestBody(Exception):
    """The request body or its Content-Type is malformed (400); the message says how."""


class UnsupportedMediaType(Exception):
    """The request's media type is not one this endpoint takes (415); the message says which it takes."""


@dataclass(frozen=True)
class Part:
    content_type: str
    data: bytes


def parse_stow_body(content_type: str, body: bytes) -> list[Part]:
    """The parts of a STOW-RS request: ``multipart/related; type="application/dicom"``."""
    media_type, params = parse_header_parameters(content_type or "")
    if media_type != "multipart/related":
        raise UnsupportedMediaType('Send multipart/related; type="application/dicom".')
    if (params.get("type") or "").strip().lower() != DICOM_MEDIA_TYPE:
        raise UnsupportedMediaType('Only multipart/related; type="application/dicom" bodies are accepted.')
    boundary = params.get("boundary") or ""
    # RFC 2046 caps boundaries at 70 characters, but Orthanc sends 73 (two UUIDs): be lenient in size.
    if not boundary or len(boundary) > MAX_BOUNDARY:
        raise BadRequestBody("The Content-Type has no valid multipart boundary.")
    head = f'Content-Type: multipart/related; type="{DICOM_MEDIA_TYPE}"; boundary="{boundary}"\r\n\r\n'
    message = BytesParser(policy=policy.HTTP).parsebytes(head.encode("latin-1") + body)
    if any(isinstance(defect, _FATAL_DEFECTS) for defect in message.defects) or not message.is_multipart():
        raise BadRequestBody("The body is not a complete multipart/related body for the boundary given.")
    parts = []
    for part in message.iter_parts():
        if part.is_multipart():
            raise BadRequestBody("Nested multipart bodies are not accepted.")
        payload = part.get_payload(decode=True)
        parts.append(Part(content_type=part.get_content_type(), data=payload if isinstance(payload, bytes) else b""))
    if not parts:
        raise BadRequestBody("The multipart body has no parts.")
    return parts


def multipart_related(parts: Iterable[bytes], media_type: str = DICOM_MEDIA_TYPE) -> tuple[bytes, str]:
    """A ``multipart/related`` body of ``parts`` and its Content-Type (WADO-RS retrieval)."""
    boundary = secrets.token_hex(16)
    chunks = []
    for data in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {media_type}\r\n\r\n".encode())
        chunks.append(data)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{media_type}"; boundary={boundary}'


def dicom_json(attributes: dict[str, Any]) -> dict[str, Any]:
    """DICOM JSON (PS3.18 F.2) of a dataset given as ``{keyword: value}``; empty values are left out.
    A value that is a list of dicts is a sequence of such datasets."""
    from pydicom import Dataset

    ds = Dataset()
    for keyword, value in attributes.items():
        if value is None or value == "" or value == []:
            continue
        if isinstance(value, list) and isinstance(value[0], dict):
            items = []
            for item in value:
                child = Dataset()
                for k, v in item.items():
                    if v is not None and v != "":
                        setattr(child, k, v)
                items.append(child)
            value = items
        setattr(ds, keyword, value)
    return ds.to_json_dict()


def person_name(family: str, given: str) -> dict[str, str]:
    """A DICOM JSON PN value: ``{"Alphabetic": "Family^Given"}``."""
    return {"Alphabetic": f"{family}^{given}"}
