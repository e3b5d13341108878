"""What the image viewer needs from a DICOM file, read once at upload, and the lossless pixel values
it windows in the browser.

``display_attributes`` runs in upload validation on the already decoded data set and returns the
dict stored as ``Study.dicom_display``:

* ``windows``: the window centre/width pairs of the file (in modality units, after the rescale), with
  their explanations when the file gives them — the viewer offers them as presets, the first as the
  initial window;
* ``pixel_spacing``: [row spacing, column spacing] in mm, and ``spacing_source``: ``"patient"``
  (Pixel Spacing) or ``"detector"`` (Imager Pixel Spacing of projection radiographs: lengths at the
  detector, not corrected for magnification); absent when the file gives neither;
* ``monochrome1``: the image is stored with white = low values (the viewer starts inverted);
* ``greyscale`` values of the served frame: ``stored_min`` / ``stored_max`` and the rescale
  ``slope`` / ``intercept``, present only for single-sample images whose stored range fits 16 bits.

``values_png`` packs the stored values of that frame into a lossless RGB PNG (red = high byte,
green = low byte of ``value - stored_min``), which every browser decodes natively; the viewer
turns a code back into a modality value as ``(code + stored_min) * slope + intercept``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

#: Largest stored range one PNG of 16-bit codes carries.
MAX_CODE = 65535


def _numbers(value: Any) -> list[float]:
    """A DICOM number or multi-valued number as floats (none when missing or unreadable)."""
    if value is None or value == "":
        return []
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    try:
        numbers = [float(v) for v in items]
    except (TypeError, ValueError):
        return []
    return numbers if all(math.isfinite(n) for n in numbers) else []


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    # A NUL would not survive PostgreSQL's jsonb (and these texts are labels only).
    return [str(v).replace("\x00", "").strip() for v in items]


def served_frame(pixels: np.ndarray, frames: int) -> np.ndarray:
    """The frame the viewer shows: the middle one of a multi-frame image (as the AI read does)."""
    if frames > 1:
        return pixels[frames // 2]
    return pixels


def display_attributes(ds: Any, pixels: np.ndarray) -> dict[str, Any]:
    """The viewer's attributes of a decoded data set (``pixels`` = ``ds.pixel_array``)."""
    attributes: dict[str, Any] = {}
    centres, widths = _numbers(ds.get("WindowCenter")), _numbers(ds.get("WindowWidth"))
    explanations = _texts(ds.get("WindowCenterWidthExplanation"))
    windows = []
    for index, (centre, width) in enumerate(zip(centres, widths, strict=False)):
        if width > 0:
            name = explanations[index] if index < len(explanations) and explanations[index] else ""
            windows.append({"center": centre, "width": width, "name": name[:64]})
    if windows:
        attributes["windows"] = windows
    for keyword, source in (("PixelSpacing", "patient"), ("ImagerPixelSpacing", "detector")):
        spacing = _numbers(ds.get(keyword))
        if len(spacing) == 2 and all(0 < s < 100 for s in spacing):
            attributes["pixel_spacing"] = spacing
            attributes["spacing_source"] = source
            break
    photometric = str(ds.get("PhotometricInterpretation", "") or "").strip().upper()
    attributes["monochrome1"] = photometric == "MONOCHROME1"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if samples == 1:
        frame = served_frame(np.asarray(pixels), frames)
        if frame.ndim == 2 and frame.dtype.kind in "iu":
            low, high = int(frame.min()), int(frame.max())
            slope = (_numbers(ds.get("RescaleSlope")) or [1.0])[0]
            intercept = (_numbers(ds.get("RescaleIntercept")) or [0.0])[0]
            if high - low <= MAX_CODE:
                attributes.update(stored_min=low, stored_max=high, slope=slope, intercept=intercept)
    return attributes


def values_png(data: bytes, stored_min: int) -> bytes:
    """The served frame's stored values minus ``stored_min`` as 16-bit codes in an RGB PNG."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    frame = served_frame(np.asarray(ds.pixel_array), frames)
    codes = np.clip(frame.astype(np.int64) - stored_min, 0, MAX_CODE).astype(np.uint16)
    rgb = np.zeros((*codes.shape, 3), dtype=np.uint8)
    rgb[..., 0] = codes >> 8
    rgb[..., 1] = codes & 0xFF
    out = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(out, format="PNG", compress_level=1)
    return out.getvalue()
