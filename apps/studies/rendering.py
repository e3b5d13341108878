"""Display images of stored studies (the study page and DICOMweb's rendered retrieval)."""

from __future__ import annotations

import io


def dicom_display_png(data: bytes) -> bytes:
    """A display PNG of a DICOM study (8-bit greyscale, windowed by the pipeline's decoder)."""
    import numpy as np
    from PIL import Image

    # Imported here: the pipeline package pulls in torch, which page-serving processes do not need.
    from apps.diagnosis.pipeline.decode import decode_image  # noqa: PLC0415

    pixels = np.asarray(decode_image(data).pixels, dtype=np.float32)
    out = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype("uint8"), "L").save(out, format="PNG")
    return out.getvalue()
