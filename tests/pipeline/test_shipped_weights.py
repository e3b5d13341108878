"""The committed weights diagnose real images and refuse what they do not know.

Uses only files in the repository (tests/fixtures, pydicom's bundled DICOM files), never ../shared.
"""

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from apps.diagnosis.pipeline import DecodeError, TwoStagePipeline, find_artifacts

WEIGHTS = Path(__file__).resolve().parents[2] / "apps" / "diagnosis" / "weights"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

pytestmark = pytest.mark.skipif(
    set(find_artifacts(WEIGHTS)) != {"router", "chest", "brain"}, reason="shipped weights are not committed"
)


@pytest.fixture(scope="module")
def pipe():
    return TwoStagePipeline.from_directory(WEIGHTS)


def _dicom(pixels: np.ndarray, photometric: str, modality: str, bits: int = 16) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = modality, photometric, 1
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = ds.BitsStored = bits
    ds.HighBit, ds.PixelRepresentation = bits - 1, 0
    ds.PixelData = pixels.astype(np.uint16 if bits == 16 else np.uint8).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _check_read(result, expected_route, expected_task, size):
    assert not result.refused, result.refusal_reason
    assert result.route == expected_route and result.task == expected_task
    assert abs(sum(result.probabilities.values()) - 1) < 1e-4
    assert abs(sum(result.route_probabilities.values()) - 1) < 1e-4
    assert result.label in result.probabilities and result.label == max(
        result.probabilities, key=result.probabilities.get
    )
    assert result.heatmap is not None and result.heatmap.min() >= 0 and result.heatmap.max() <= 1.0001
    overlay = Image.open(io.BytesIO(result.overlay_png))
    assert overlay.mode == "RGB" and overlay.size == (result.heatmap.shape[1], result.heatmap.shape[0])
    assert result.image_size == size
    if result.roi_box is not None:  # drawn only around one focal region (cam.focal_box)
        x0, y0, x1, y1 = result.roi_box
        assert 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]
    assert set(result.models) == {"router", expected_task}
    assert all(len(m["sha256"]) == 64 for m in result.models.values())
    assert {"decode", "router", "specialist", "overlay", "total"} <= set(result.timings_ms)


def test_chest_xray_jpeg_gets_a_chest_read(pipe):
    _check_read(pipe.run((FIXTURES / "chest_xray.jpg").read_bytes()), "chest_xray", "chest", (192, 192))


def test_brain_mri_jpeg_gets_a_brain_read(pipe):
    _check_read(pipe.run((FIXTURES / "brain_mri.jpg").read_bytes()), "brain_mri", "brain", (192, 192))


def test_large_png_keeps_original_size_and_caps_the_overlay(pipe):
    big = Image.open(FIXTURES / "chest_xray.jpg").resize((1500, 1300))
    buf = io.BytesIO()
    big.save(buf, format="PNG")
    result = pipe.run(buf.getvalue())
    _check_read(result, "chest_xray", "chest", (1500, 1300))
    assert max(result.heatmap.shape) <= 1024


def test_monochrome1_dicom_reads_like_its_monochrome2_twin(pipe):
    gray = np.asarray(Image.open(FIXTURES / "chest_xray.jpg").convert("L"), dtype=np.uint16) * 256
    normal = pipe.run(_dicom(gray, "MONOCHROME2", "CR"))
    inverted = pipe.run(_dicom(65535 - gray, "MONOCHROME1", "CR"))
    _check_read(inverted, "chest_xray", "chest", (192, 192))
    assert inverted.label == normal.label
    assert inverted.modality_tag == "CR" and inverted.modality_warning is None
    for k in normal.probabilities:
        assert abs(inverted.probabilities[k] - normal.probabilities[k]) < 0.02


def test_modality_tag_disagreeing_with_the_image_is_reported(pipe):
    gray = np.asarray(Image.open(FIXTURES / "brain_mri.jpg").convert("L"))
    result = pipe.run(_dicom(gray, "MONOCHROME2", "CR", bits=8))
    assert result.route == "brain_mri"
    assert "CR" in result.modality_warning and "brain MRI" in result.modality_warning


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8),  # noise
        np.zeros((256, 256), np.uint8),  # blank
        np.full((300, 200), 255, np.uint8),  # white page
        (np.add.outer(np.arange(256), np.arange(256)) // 2).astype(np.uint8),  # gradient
    ],
    ids=["noise", "blank", "white", "gradient"],
)
def test_noise_and_blank_images_are_refused(pipe, image):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    result = pipe.run(buf.getvalue())
    assert result.refused and result.route == "unsupported"
    assert result.refusal_reason and result.task is None and result.overlay_png is None


def test_pydicom_ct_file_is_refused(pipe):
    result = pipe.run(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    assert result.refused
    assert result.modality_tag == "CT"


def test_garbage_raises_a_readable_decode_error(pipe):
    with pytest.raises(DecodeError):
        pipe.run(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
