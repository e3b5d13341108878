"""What the viewer learns from a DICOM at upload (apps/studies/dicom.py) and the lossless stored
values it windows in the browser (``studies:study_image_values``)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from apps.studies.dicom import values_png
from apps.studies.validation import validate_image_bytes
from tests.factories import dicom_bytes, make_study, png_bytes


def _decode(png: bytes) -> np.ndarray:
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int64)
    return (rgb[..., 0] << 8) | rgb[..., 1]


def test_windows_spacing_and_stored_range_are_read_at_upload():
    pixels = (np.arange(64 * 64) % 4000 + 50).astype("<u2").reshape(64, 64)  # 12 bits stored
    upload = validate_image_bytes(
        dicom_bytes(
            pixel_bytes=pixels.tobytes(),
            modality="DX",
            WindowCenter=[1000, 40],
            WindowWidth=[2000, 400],
            WindowCenterWidthExplanation=["WIDE", "NARROW"],
            ImagerPixelSpacing=[0.15, 0.2],
            RescaleSlope=2,
            RescaleIntercept=-1024,
        )
    )
    assert upload.dicom_display == {
        "windows": [
            {"center": 1000.0, "width": 2000.0, "name": "WIDE"},
            {"center": 40.0, "width": 400.0, "name": "NARROW"},
        ],
        "pixel_spacing": [0.15, 0.2],
        "spacing_source": "detector",
        "monochrome1": False,
        "stored_min": 50,
        "stored_max": 4049,
        "slope": 2.0,
        "intercept": -1024.0,
    }


def test_patient_pixel_spacing_wins_and_monochrome1_is_noted():
    upload = validate_image_bytes(
        dicom_bytes(photometric="MONOCHROME1", PixelSpacing=[0.3, 0.3], ImagerPixelSpacing=[0.35, 0.35])
    )
    assert upload.dicom_display["pixel_spacing"] == [0.3, 0.3]
    assert upload.dicom_display["spacing_source"] == "patient"
    assert upload.dicom_display["monochrome1"] is True
    assert "windows" not in upload.dicom_display  # none in the file: the viewer starts on "Auto"


def test_png_and_jpeg_have_no_dicom_attributes():
    assert validate_image_bytes(png_bytes()).dicom_display == {}


def test_values_png_round_trips_the_stored_values_exactly():
    rng = np.random.default_rng(3)
    pixels = (rng.random((48, 40)) * 4095).astype("<u2")
    data = dicom_bytes(rows=48, cols=40, pixel_bytes=pixels.tobytes())
    stored_min = int(pixels.min())
    assert np.array_equal(_decode(values_png(data, stored_min)) + stored_min, pixels)


@pytest.mark.django_db
def test_the_values_rendition_is_served_for_a_dicom_and_404_for_a_png(client, world):
    pixels = (np.arange(64 * 64) % 4096).astype("<u2").reshape(64, 64)
    dicom_study = make_study(world.paul_record, world.alice, dicom_bytes(pixel_bytes=pixels.tobytes()), "x.dcm")
    png_study = make_study(world.paul_record, world.alice)
    client.force_login(world.alice)
    response = client.get(reverse("studies:study_image_values", args=["st-mary", dicom_study.pk]))
    assert response.status_code == 200 and response["Cache-Control"] == "private, no-store"
    assert np.array_equal(_decode(response.content), pixels)
    assert client.get(reverse("studies:study_image_values", args=["st-mary", png_study.pk])).status_code == 404
