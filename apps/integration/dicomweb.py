"""DICOMweb wire formats (DICOM PS3.18): the multipart/related bodies of STOW-RS and WADO-RS, and
the DICOM JSON datasets of the STOW-RS response and of QIDO-RS results.

STOW-RS bodies are split by ``requests_toolbelt``'s ``MultipartDecoder``, which works on the bytes
as they are (the standard library's MIME parser turns a binary body into text first, which costs
several times the body in memory). The decoder is lenient where a malformed body must be refused,
so the delimiters are checked here first: the body starts with the boundary and holds the close
delimiter. DICOM JSON comes from pydicom's ``Dataset.to_json_dict``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.utils.http import parse_header_parameters
from requests_toolbelt.multipart.decoder import ImproperBodyPartContentException, MultipartDecoder

DICOM_MEDIA_TYPE = "application/dicom"
DICOM_JSON_MEDIA_TYPE = "application/dicom+json"
#: RFC 2046 caps boundaries at 70 characters, but Orthanc sends 73 (two UUIDs): be lenient in size.
MAX_BOUNDARY = 200


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
    if not boundary or len(boundary) > MAX_BOUNDARY or not boundary.isascii():
        raise BadRequestBody("The Content-Type has no valid multipart boundary.")
    delimiter = b"--" + boundary.encode("ascii")
    if not body.startswith(delimiter):
        # A preamble (some clients send just a CRLF) before the first delimiter is ignored (RFC 2046).
        first = body.find(b"\r\n" + delimiter)
        body = body[first + 2 :] if first >= 0 else b""
    if not body or not (body.startswith(delimiter + b"--") or b"\r\n" + delimiter + b"--" in body):
        raise BadRequestBody("The body is not a complete multipart/related body for the boundary given.")
    try:
        # Part headers as latin-1, which decodes any byte (the default, UTF-8, raises on some).
        decoded = MultipartDecoder(
            body, f'multipart/related; type="{DICOM_MEDIA_TYPE}"; boundary="{boundary}"', encoding="latin-1"
        )
    except ImproperBodyPartContentException:
        raise BadRequestBody("A part of the multipart body has no header section.") from None
    parts = []
    for part in decoded.parts:
        part_type, _ = parse_header_parameters(part.headers.get(b"Content-Type", b"text/plain").decode("latin-1"))
        parts.append(Part(content_type=part_type, data=part.content))
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
