"""The decoder reports the bits per grey value of the upload (an input-drift signal)."""

import io

import numpy as np
import pytest
from PIL import Image

from apps.diagnosis.pipeline.decode import decode_image
from tests.factories import jpeg_bytes, png_bytes

from .test_decode_dicom import _dicom


def _png16() -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 7).astype(np.uint16)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("data", "bits"),
    [(png_bytes(), 8), (jpeg_bytes(), 8), (_png16(), 16)],
    ids=["png-8", "jpeg-8", "png-16"],
)
def test_raster_bit_depth(data, bits):
    assert decode_image(data).bit_depth == bits


def test_dicom_bit_depth_is_bits_stored():
    assert decode_image(_dicom(np.full((64, 64), 900, np.uint16))).bit_depth == 16
