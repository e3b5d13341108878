"""Upload validation: decide what a file is from its bytes and refuse anything unsafe,
before anything is stored.

* Magic bytes decide the format (PNG, JPEG, DICOM); the file name's extension is ignored.
* PNG/JPEG: Pillow with a format allow-list, a pixel-count limit and a decoded-bytes limit
  (width × height × channels × bytes per sample, from the header, before decoding) against
  decompression bombs, then a full decode that catches truncation.
* DICOM: "DICM" at offset 128 is required; the 128-byte preamble must be empty or plain
  padding (a preamble carrying an executable — PE/ELF/Mach-O/script — is refused); the header is
  read with ``stop_before_pixels``; the transfer syntax must be on an allow-list; rows×columns×
  frames and the decoded size (× samples × bytes per sample) are capped before any pixel is read;
  rescale slope/intercept and window centre/width must be finite, plausible numbers (a NaN there
  turns every pixel into NaN downstream); the pixel data must be present and
  of the declared size.

Every refusal raises ``UploadRejected`` whose message is written for the clinician.
"""

from __future__ import annotations

import io
import math
import re
import struct
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, ImageFile, UnidentifiedImageError

from .dicom import display_attributes

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
DICOM_MAGIC_OFFSET = 128

# Uncompressed and the lossless/lossy JPEG syntaxes pydicom can decode with Pillow.
ALLOWED_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}
UNSUPPORTED_HINT = "Please upload a PNG, JPEG or DICOM image of a chest X-ray or brain MRI."
REEXPORT_HINT = "Please export the image again from the PACS or the modality."
#: Larger than any real rescale or window value (CT uses about ±1e4 HU), small enough to keep float32 sane.
DICOM_VALUE_LIMIT = 1e7
#: The grey-level attributes the pipeline applies: keyword -> how a clinician reads it.
DICOM_GREY_LEVEL_ATTRIBUTES = {
    "RescaleSlope": "rescale slope",
    "RescaleIntercept": "rescale intercept",
    "WindowCenter": "window centre",
    "WindowWidth": "window width",
}


class UploadRejected(ValidationError):
    """The upload is refused; ``messages[0]`` says why, in words for a clinician."""


@dataclass(frozen=True)
class ValidatedUpload:
    data: bytes
    source_format: str  # "png" | "jpeg" | "dicom"
    width: int
    height: int
    dicom_modality: str = ""
    #: What the viewer needs from a DICOM file (``apps.studies.dicom.display_attributes``).
    dicom_display: dict = field(default_factory=dict)


def sniff_format(head: bytes) -> str | None:
    if head.startswith(PNG_MAGIC):
        return "png"
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if len(head) >= DICOM_MAGIC_OFFSET + 4 and head[DICOM_MAGIC_OFFSET : DICOM_MAGIC_OFFSET + 4] == b"DICM":
        return "dicom"
    return None


def read_upload(uploaded_file, max_bytes: int | None = None) -> bytes:  # noqa: ANN001 - Django UploadedFile
    """Read the whole upload, refusing empty and over-size files without reading past the cap."""
    max_bytes = max_bytes or settings.UPLOAD_MAX_BYTES
    size = getattr(uploaded_file, "size", None)
    if size is not None and size > max_bytes:
        raise UploadRejected(_too_large(max_bytes))
    uploaded_file.seek(0)
    data = uploaded_file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise UploadRejected(_too_large(max_bytes))
    if not data:
        raise UploadRejected("The file is empty. " + UNSUPPORTED_HINT)
    return data


def validate_image_bytes(data: bytes) -> ValidatedUpload:
    """Validate bytes already read (used by the upload form, the API and the demo seeder)."""
    if not data:
        raise UploadRejected("The file is empty. " + UNSUPPORTED_HINT)
    if len(data) > settings.UPLOAD_MAX_BYTES:
        raise UploadRejected(_too_large(settings.UPLOAD_MAX_BYTES))
    fmt = sniff_format(data[: DICOM_MAGIC_OFFSET + 4])
    if fmt is None:
        raise UploadRejected("This file is not a PNG, JPEG or DICOM image. " + UNSUPPORTED_HINT)
    if fmt == "dicom":
        return _validate_dicom(data)
    return _validate_raster(data, fmt)


def validate_upload(uploaded_file) -> ValidatedUpload:  # noqa: ANN001
    return validate_image_bytes(read_upload(uploaded_file))


#: Samples per pixel of each PNG colour type (PNG spec, IHDR): grey, RGB, palette, grey+alpha, RGBA.
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_header(data: bytes) -> tuple[int, int]:
    """(channels, bits per sample) from the PNG's IHDR chunk, which the format puts first."""
    if len(data) < 26 or data[12:16] != b"IHDR":
        raise UploadRejected("The PNG file is damaged or incomplete and cannot be read (no image header).")
    bit_depth, colour_type = struct.unpack(">BB", data[24:26])
    if colour_type not in PNG_CHANNELS or bit_depth not in (1, 2, 4, 8, 16):
        raise UploadRejected("The PNG file is damaged or incomplete and cannot be read (invalid image header).")
    return PNG_CHANNELS[colour_type], bit_depth


def check_decoded_size(width: int, height: int, channels: int, bits: int, frames: int = 1) -> None:
    """Refuse an image whose decoded pixels would exceed ``UPLOAD_MAX_DECODED_BYTES``, before
    decoding it. A small compressed file can claim a huge image: a 308 KB PNG of 6300×6300 RGBA at
    16 bits decodes to 303 MB and took 11 s and 1 GB of memory before this check."""
    limit = settings.UPLOAD_MAX_DECODED_BYTES
    decoded = width * height * frames * channels * max(1, bits // 8)
    if decoded > limit:
        colour = {1: "greyscale", 2: "greyscale with transparency", 3: "colour", 4: "colour with transparency"}
        raise UploadRejected(
            f"The image is too large to process: {width}×{height} pixels"
            + (f" × {frames} frames" if frames > 1 else "")
            + f", {colour.get(channels, f'{channels} channels')} at {bits} bits, would take "
            f"{_size(decoded)} of memory once decoded (the limit is {_size(limit)}). "
            "Please export it at a lower resolution, in greyscale or at 8 bits."
        )


def _validate_raster(data: bytes, fmt: str) -> ValidatedUpload:
    allowed = ["PNG"] if fmt == "png" else ["JPEG"]
    max_pixels = settings.UPLOAD_MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=allowed) as probe:
                width, height = probe.size
                if width * height > max_pixels or width <= 0 or height <= 0:
                    raise UploadRejected(
                        f"The image is {width}×{height} pixels, above the {max_pixels // 1_000_000} megapixel limit."
                    )
                # Pillow's mode understates 16-bit colour PNGs (it reads them as 8-bit RGB(A) after
                # decoding the 16-bit data), so PNG sizes come from the IHDR chunk itself.
                channels, bits = _png_header(data) if fmt == "png" else (len(probe.getbands()), 8)
                check_decoded_size(width, height, channels, bits)
                n_frames = getattr(probe, "n_frames", 1)
                if n_frames > 1:
                    raise UploadRejected("Animated images are not accepted. " + UNSUPPORTED_HINT)
            with _strict_decoding(), Image.open(io.BytesIO(data), formats=allowed) as image:
                image.load()  # full decode: catches truncated and corrupt files
            if fmt == "png":
                with Image.open(io.BytesIO(data), formats=allowed) as checked:
                    checked.verify()  # every chunk's CRC, up to IEND (independent of the flag below)
    except UploadRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UploadRejected("The image is too large to process safely.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UploadRejected(
            f"The {fmt.upper()} file is damaged or incomplete and cannot be read ({_short(exc)})."
        ) from None
    return ValidatedUpload(data=data, source_format=fmt, width=width, height=height)


def _validate_dicom(data: bytes) -> ValidatedUpload:
    import pydicom
    from pydicom.errors import InvalidDicomError

    preamble = data[:DICOM_MAGIC_OFFSET]
    # The 128-byte preamble is normally zeros; only a TIFF header (dual-format files) is
    # tolerated. Anything else, above all an executable header (the "PE-DICOM" polyglot), is refused.
    if preamble.strip(b"\x00") and not preamble.startswith((b"II*\x00", b"MM\x00*")):
        raise UploadRejected("This DICOM file carries unexpected content in its preamble and was refused for safety.")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError, AttributeError) as exc:
        raise UploadRejected(f"The DICOM file is damaged and cannot be read ({_short(exc)}).") from None
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types on hostile input; never a 500
        raise UploadRejected(f"The DICOM file is damaged and cannot be read ({_short(exc)}).") from None

    tsuid = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or "")
    if tsuid not in ALLOWED_TRANSFER_SYNTAXES:
        raise UploadRejected(
            f"DICOM transfer syntax {tsuid or '(missing)'} is not supported. "
            "Please export the image uncompressed or as baseline JPEG."
        )
    try:
        rows = int(ds.get("Rows", 0) or 0)
        cols = int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.get("BitsAllocated", 0) or 0)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (TypeError, ValueError):
        raise UploadRejected("The DICOM image dimensions are not valid numbers.") from None
    if rows <= 0 or cols <= 0:
        raise UploadRejected("The DICOM file has no image in it (rows/columns missing).")
    if rows * cols * frames > settings.UPLOAD_MAX_PIXELS:
        raise UploadRejected(f"The DICOM image is {cols}×{rows}×{frames} pixels, above the processing limit.")
    if bits not in (8, 16) or samples not in (1, 3):
        raise UploadRejected("Only 8- or 16-bit greyscale or RGB DICOM images are supported.")
    check_decoded_size(cols, rows, samples, bits, frames)
    _check_grey_level_values(ds)

    try:
        full = pydicom.dcmread(io.BytesIO(data))
        pixel_bytes = full.get("PixelData")
    except Exception as exc:  # noqa: BLE001 - hostile input; report, never crash
        raise UploadRejected(f"The DICOM pixel data cannot be read ({_short(exc)}).") from None
    if pixel_bytes is None:
        raise UploadRejected("The DICOM file has no pixel data.")
    if tsuid in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"):
        expected = rows * cols * frames * samples * (bits // 8)
        if len(pixel_bytes) < expected:
            raise UploadRejected("The DICOM pixel data is incomplete (the file looks truncated).")
    try:
        # Full decode, as for PNG/JPEG: compressed pixel data must really decode here (and a
        # compression this server has no decoder for is refused now rather than failing later).
        pixels = full.pixel_array  # decoding is the check
    except Exception as exc:  # noqa: BLE001 - hostile input; report, never crash
        raise UploadRejected(
            f"The DICOM image data cannot be decoded ({_short(exc)}). "
            "Please export the image uncompressed or as baseline JPEG."
        ) from None
    modality = str(ds.get("Modality", "") or "").strip().rstrip("\x00")
    if "\x00" in modality:  # DICOM pads with NUL at the end only; PostgreSQL stores no NUL in text
        raise UploadRejected("The DICOM Modality contains a NUL character; the file looks damaged.")
    modality = modality[:16]
    return ValidatedUpload(
        data=data,
        source_format="dicom",
        width=cols,
        height=rows,
        dicom_modality=modality,
        dicom_display=display_attributes(full, pixels),
    )


def _check_grey_level_values(ds) -> None:  # noqa: ANN001 - pydicom Dataset
    """Refuse rescale and window values that would poison the pixel values: not a number, NaN or
    infinite, absurdly large, a zero slope (every pixel the same) or a window width of zero or less."""
    for keyword, label in DICOM_GREY_LEVEL_ATTRIBUTES.items():
        try:
            raw = ds.get(keyword)
            if raw is None or raw == "":
                continue
            values = [float(v) for v in (raw if isinstance(raw, Sequence) and not isinstance(raw, str) else [raw])]
        except (TypeError, ValueError):
            raise UploadRejected(f"The DICOM {label} is not a number. {REEXPORT_HINT}") from None
        for value in values:
            if not math.isfinite(value):
                raise UploadRejected(f"The DICOM {label} is not a finite number ({value}). {REEXPORT_HINT}")
            if abs(value) > DICOM_VALUE_LIMIT:
                raise UploadRejected(f"The DICOM {label} ({value:g}) is implausibly large. {REEXPORT_HINT}")
            if keyword == "RescaleSlope" and value == 0:
                raise UploadRejected(f"The DICOM rescale slope is 0, which would erase the image. {REEXPORT_HINT}")
            if keyword == "WindowWidth" and value <= 0:
                raise UploadRejected(f"The DICOM window width ({value:g}) must be above 0. {REEXPORT_HINT}")


_STRICT_LOCK = threading.Lock()


@contextmanager
def _strict_decoding() -> Iterator[None]:
    """Decode with Pillow's ``LOAD_TRUNCATED_IMAGES`` off, whatever the process set it to.

    The flag is global and other libraries flip it on when imported (WeasyPrint does, for the
    report PDFs); with it on, a truncated PNG or JPEG decodes "successfully" with grey filling.
    """
    with _STRICT_LOCK:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _too_large(max_bytes: int) -> str:
    return f"The file is larger than the {_size(max_bytes)} limit."


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.0f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"


def _short(exc: BaseException) -> str:
    """A short, clinician-safe hint from a decoder error: no object reprs, addresses or paths."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = re.sub(r"<[^>]*>", "", text)  # drop "<_io.BytesIO object at 0x…>" and similar
    text = re.sub(r"\s+", " ", text).strip(" :,.")
    return (text or "unreadable data")[:100]
