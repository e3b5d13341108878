"""Upload validation (apps.studies.validation) at unit level: every hostile or broken file is
refused with a message a clinician can read, and good PNG, JPEG and DICOM files pass.

The builders here (``BAD_FILES``, ``dicom_bytes``...) are reused by tests/portal/test_uploads.py,
which sends the same files through the upload page and the API.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from apps.studies.validation import UploadRejected, ValidatedUpload, validate_image_bytes, validate_upload
from tests.factories import dicom_bytes, jpeg_bytes, png_bytes

# --- builders ---------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(side: int = 20000) -> bytes:
    """A real decompression bomb: a side×side greyscale PNG of zeros (400 megapixels at the
    default) that compresses to a few hundred kilobytes."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    idat = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_claiming_rgba16(side: int = 6300, rows_present: int = 2) -> bytes:
    """Attack finding 8: a tiny PNG whose header claims side×side RGBA at 16 bits per sample
    (6300×6300: 39.7 megapixels, under the pixel limit, but 303 MB once decoded). Only the first
    ``rows_present`` rows are in the file, so decoding it would fail as truncated: a "too large"
    refusal proves the size was judged from the header, before any decoding."""
    row = b"\x00" * (1 + side * 8)  # filter byte + 4 samples × 2 bytes per pixel
    idat = zlib.compress(row * rows_present, 9)
    header = struct.pack(">IIBBBBB", side, side, 16, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def tiff_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32), 128, dtype="uint8"), "L").save(buf, format="TIFF")
    return buf.getvalue()


def dicom_with_exe_preamble() -> bytes:
    """The "PE-DICOM" polyglot: a Windows executable header in the 128-byte preamble."""
    data = dicom_bytes()
    preamble = (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 46 + b"PE\x00\x00").ljust(
        128, b"\x00"
    )
    return preamble + data[128:]


def malformed_dicom() -> bytes:
    rng = np.random.default_rng(7)
    return b"\x00" * 128 + b"DICM" + rng.integers(0, 256, 600, dtype="uint8").tobytes()


def dicom_unsupported_syntax() -> bytes:
    from pydicom.encaps import encapsulate

    # JPEG 2000 lossless: not on the allow-list.
    return dicom_bytes(transfer_syntax="1.2.840.10008.1.2.4.90", pixel_bytes=encapsulate([b"\xff\x4f" + b"\x00" * 30]))


def dicom_too_many_pixels() -> bytes:
    """A header claiming 10000×10000 pixels (100 megapixels) over a few bytes of data."""
    return dicom_bytes(rows=10000, cols=10000, pixel_bytes=b"\x00" * 64)


def dicom_truncated_pixels() -> bytes:
    data = dicom_bytes(rows=128, cols=128)
    return data[: len(data) - 128 * 128]  # cut off half of the 32 KB of pixel data


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


#: name -> (builder, file name it is uploaded as, words the refusal message must contain)
BAD_FILES = {
    "truncated_png": (lambda: _truncate(png_bytes((256, 256))), "scan.png", "damaged or incomplete"),
    "truncated_jpeg": (lambda: _truncate(jpeg_bytes((256, 256))), "scan.jpg", "damaged or incomplete"),
    "decompression_bomb": (png_bomb, "bomb.png", "too large"),
    "png_claiming_rgba16": (png_claiming_rgba16, "small.png", "too large to process"),
    "tiff_renamed_png": (tiff_bytes, "xray.png", "not a PNG, JPEG or DICOM"),
    "dicom_exe_preamble": (dicom_with_exe_preamble, "image.dcm", "preamble"),
    "zero_bytes": (lambda: b"", "empty.png", "empty"),
    "malformed_dicom": (malformed_dicom, "broken.dcm", "DICOM"),
    "dicom_unsupported_syntax": (dicom_unsupported_syntax, "j2k.dcm", "transfer syntax"),
    "dicom_too_many_pixels": (dicom_too_many_pixels, "huge.dcm", "above the processing limit"),
    "dicom_truncated_pixels": (dicom_truncated_pixels, "cut.dcm", "incomplete"),
    "dicom_nul_in_modality": (lambda: dicom_bytes(modality="C\x00R"), "nul.dcm", "NUL character"),
    "html_renamed_jpg": (lambda: b"<html><script>alert(1)</script></html>", "x.jpg", "not a PNG, JPEG or DICOM"),
}

GOOD_FILES = {
    "png": (lambda: png_bytes((96, 80)), "chest.png", "png", (96, 80)),
    "jpeg": (lambda: jpeg_bytes((96, 80)), "chest.jpg", "jpeg", (96, 80)),
    "dicom_16bit_monochrome2": (lambda: dicom_bytes(bits=16, photometric="MONOCHROME2"), "ct.dcm", "dicom", (64, 64)),
    "dicom_8bit_monochrome1": (
        lambda: dicom_bytes(bits=8, photometric="MONOCHROME1", rows=48, cols=40),
        "cr.dcm",
        "dicom",
        (40, 48),
    ),
}


def _refusal(data: bytes) -> str:
    with pytest.raises(UploadRejected) as excinfo:
        validate_image_bytes(data)
    return excinfo.value.messages[0]


# --- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_refused_with_a_readable_message(case):
    builder, _, words = BAD_FILES[case]
    message = _refusal(builder())
    assert words.lower() in message.lower(), message
    assert "Traceback" not in message and len(message) < 300


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_file_is_refused_through_validate_upload(case):
    builder, name, _ = BAD_FILES[case]
    with pytest.raises(UploadRejected):
        validate_upload(SimpleUploadedFile(name, builder()))


def test_over_size_file_is_refused_before_decoding(settings):
    settings.UPLOAD_MAX_BYTES = 2000
    data = png_bytes((128, 128))
    assert len(data) > 2000
    message = _refusal(data)
    assert "larger than" in message and "limit" in message
    assert "0 MB" not in message, "the limit must be stated in a unit that makes sense"
    with pytest.raises(UploadRejected):
        validate_upload(SimpleUploadedFile("big.png", data))


def test_pixel_limit_follows_the_setting(settings):
    settings.UPLOAD_MAX_PIXELS = 50 * 50
    assert "megapixel" in _refusal(png_bytes((64, 64))) or "limit" in _refusal(png_bytes((64, 64)))
    assert "limit" in _refusal(dicom_bytes(rows=64, cols=64))


def test_decoded_size_is_judged_from_the_header_before_decoding():
    data = png_claiming_rgba16()
    assert len(data) < 2048
    message = _refusal(data)
    assert "6300×6300 pixels, colour with transparency at 16 bits" in message
    assert "303 MB of memory once decoded (the limit is 76 MB)" in message
    assert "lower resolution, in greyscale or at 8 bits" in message


def test_decoded_size_limit_follows_the_setting(settings):
    """8-bit greyscale 64×64 is 4 KB decoded and 16-bit is 8 KB: a 6 KB limit takes the first only,
    whatever the format (DICOM multiplies frames, samples and bytes per sample the same way)."""
    settings.UPLOAD_MAX_DECODED_BYTES = 6 * 1024
    assert validate_image_bytes(png_bytes((64, 64))).width == 64
    assert validate_image_bytes(dicom_bytes(bits=8, rows=64, cols=64)).width == 64
    assert "8 KB of memory once decoded (the limit is 6 KB)" in _refusal(dicom_bytes(bits=16, rows=64, cols=64))
    assert "too large to process" in _refusal(png_claiming_rgba16(side=64))


def test_extension_does_not_decide_the_format():
    """A real PNG named .dcm is a PNG; a DICOM named .png is a DICOM."""
    assert validate_upload(SimpleUploadedFile("odd.dcm", png_bytes())).source_format == "png"
    assert validate_upload(SimpleUploadedFile("odd.png", dicom_bytes())).source_format == "dicom"


def test_elf_preamble_is_refused_too():
    data = dicom_bytes()
    assert "preamble" in _refusal(b"\x7fELF" + b"\x00" * 124 + data[128:])


def test_dicom_without_pixel_data_is_refused():
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(dicom_bytes()))
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    assert "pixel data" in _refusal(buf.getvalue()).lower()


def test_dicom_with_undecodable_compressed_pixels_is_refused():
    """JPEG Baseline is on the allow-list, so its pixel data must actually decode."""
    from pydicom.encaps import encapsulate

    data = dicom_bytes(bits=8, transfer_syntax="1.2.840.10008.1.2.4.50", pixel_bytes=encapsulate([b"\xff\xd8garbage"]))
    message = _refusal(data)
    assert "DICOM" in message


def test_animated_png_is_refused():
    frames = [Image.fromarray(np.full((32, 32), v, dtype="uint8"), "L") for v in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:])
    assert "Animated" in _refusal(buf.getvalue())


# --- acceptances ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(GOOD_FILES))
def test_good_file_is_accepted(case):
    builder, name, fmt, (width, height) = GOOD_FILES[case]
    data = builder()
    result = validate_upload(SimpleUploadedFile(name, data))
    assert isinstance(result, ValidatedUpload)
    assert result.source_format == fmt
    assert (result.width, result.height) == (width, height)
    assert result.data == data
    if fmt == "dicom":
        assert result.dicom_modality == "CR"


def test_jpeg_baseline_dicom_is_accepted():
    from pydicom.encaps import encapsulate

    buf = io.BytesIO()
    Image.fromarray(np.full((32, 48), 100, dtype="uint8"), "L").save(buf, format="JPEG")
    data = dicom_bytes(
        bits=8, rows=32, cols=48, transfer_syntax="1.2.840.10008.1.2.4.50", pixel_bytes=encapsulate([buf.getvalue()])
    )
    assert validate_image_bytes(data).source_format == "dicom"


@pytest.mark.parametrize("case", ["truncated_png", "truncated_jpeg"])
def test_truncation_is_caught_even_when_another_library_relaxed_pillow(monkeypatch, case):
    """WeasyPrint (report PDFs) sets Pillow's global LOAD_TRUNCATED_IMAGES on import; uploads
    must still refuse truncated images, and the flag is left as it was found."""
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    builder, _, words = BAD_FILES[case]
    assert words in _refusal(builder())
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    assert validate_image_bytes(png_bytes()).source_format == "png"


# --- grey-level values that would poison the pipeline --------------------------------------------


def dicom_with(**attributes: object) -> bytes:
    """``dicom_bytes()`` with rescale/window attributes set (strings are written as they are)."""
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(dicom_bytes()))
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("attributes", "words"),
    [
        ({"RescaleSlope": "NaN"}, "rescale slope is not a finite number"),
        ({"RescaleIntercept": "inf"}, "rescale intercept is not a finite number"),
        ({"WindowCenter": "NaN", "WindowWidth": "400"}, "window centre is not a finite number"),
        ({"WindowCenter": "40", "WindowWidth": "-Infinity"}, "window width is not a finite number"),
        ({"WindowCenter": ["40", "NaN"], "WindowWidth": ["400", "80"]}, "window centre is not a finite number"),
        ({"RescaleSlope": "0"}, "rescale slope is 0"),
        ({"RescaleIntercept": "-2e8"}, "implausibly large"),
        ({"WindowCenter": "1e9", "WindowWidth": "400"}, "implausibly large"),
        ({"WindowCenter": "40", "WindowWidth": "0"}, "window width (0) must be above 0"),
        ({"WindowCenter": "40", "WindowWidth": "-5"}, "window width (-5) must be above 0"),
    ],
)
def test_dicom_with_poisonous_grey_level_values_is_refused(attributes, words):
    message = _refusal(dicom_with(**attributes))
    assert words in message, message
    assert message.startswith("The DICOM ") and "export the image again" in message


def test_dicom_grey_level_value_that_is_not_a_number_is_refused():
    data = dicom_with(RescaleSlope="12345")
    message = _refusal(data.replace(b"12345", b"abcde"))
    assert "rescale slope is not a number" in message, message


def test_dicom_with_ordinary_rescale_and_window_is_accepted():
    data = dicom_with(
        RescaleSlope="1", RescaleIntercept="-1024", WindowCenter=["40", "300"], WindowWidth=["400", "1500"]
    )
    assert validate_image_bytes(data).source_format == "dicom"
