"""The committed weights diagnose real images and refuse what they do not know.

Uses only files in the repository (tests/fixtures, pydicom's bundled DICOM files), never ../shared.
"""

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image, ImageDraw
from pydicom.data import get_testdata_file
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from apps.diagnosis.pipeline import DecodeError, TwoStagePipeline

WEIGHTS = Path(__file__).resolve().parents[2] / "apps" / "diagnosis" / "weights"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


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
    # The map alone, at the network's resolution: 8-bit grey, min-max scaled (hottest pixel 255).
    heat = np.asarray(Image.open(io.BytesIO(result.heatmap_png)))
    assert heat.ndim == 2 and max(heat.shape) <= 16 and heat.max() in (0, 255)
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


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _lungs_cartoon(size: int = 384) -> Image.Image:
    """A textbook drawing of the chest: outlined torso, two pink lungs, a heart, a label."""
    im = Image.new("RGB", (size, size), "white")
    d = ImageDraw.Draw(im)
    d.rounded_rectangle([60, 40, 324, 360], radius=60, outline="black", width=4)
    d.line([192, 40, 192, 130], fill="black", width=10)
    d.ellipse([80, 110, 185, 330], fill=(240, 160, 170), outline="black", width=3)
    d.ellipse([199, 110, 304, 330], fill=(240, 160, 170), outline="black", width=3)
    d.ellipse([175, 220, 245, 300], fill=(200, 40, 50), outline="black", width=3)
    d.text((20, 10), "LUNGS", fill="black")
    return im


def _axial_head_diagram(size: int = 384) -> Image.Image:
    """A grey-scale teaching diagram of an axial head slice: skull ring, grey brain, two ventricles
    (the hardest cartoon: dark background and a bright rim, like a real slice)."""
    im = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(im)
    d.ellipse([60, 40, 324, 344], fill=235)
    d.ellipse([75, 55, 309, 329], fill=120)
    d.ellipse([150, 130, 185, 250], fill=30)
    d.ellipse([199, 130, 234, 250], fill=30)
    d.line([192, 60, 192, 320], fill=90, width=3)
    return im


@pytest.mark.parametrize("draw", [_lungs_cartoon, _axial_head_diagram], ids=["lungs", "axial-head"])
def test_drawn_anatomical_cartoons_are_refused(pipe, draw):
    result = pipe.run(_png(draw()))
    assert result.refused and result.refusal_code in {"other_modality", "unclear_route", "unlike_training"}
    assert (
        result.label is None and result.overlay_png is None and result.refusal_reason.endswith("no AI read was made.")
    )


def test_every_shipped_specialist_has_a_feature_check_and_a_margin(pipe):
    for task, specialist in pipe.specialists.items():
        assert specialist.feature_check is not None, task
        assert specialist.feature_check.threshold == specialist.card["ood"]["threshold"] > 0
        # 0 is a valid margin: every committed validation read already reaches the card's accuracy
        assert 0 <= specialist.thresholds["min_margin"] < 1
    assert pipe.router.describer is not None and "head_ct" in pipe.router.describer.kinds


def test_a_real_chest_film_passes_the_feature_check(pipe):
    result = pipe.run((FIXTURES / "chest_xray.jpg").read_bytes())
    assert not result.refused
    assert result.ood["score"] <= result.ood["threshold"]


def test_an_image_unlike_the_training_data_is_refused_with_the_specialists_words(pipe, monkeypatch):
    """The feature-space check decides after the router: with a threshold no image can pass, the
    brain MRI the router accepts is refused, in words, with no label, heatmap or box."""
    monkeypatch.setattr(pipe.specialists["brain"].feature_check, "threshold", -1.0)
    result = pipe.run((FIXTURES / "brain_mri.jpg").read_bytes())
    assert result.refused and result.refusal_code == "unlike_training"
    assert result.refusal_reason.startswith(
        "This looks like a brain image, but unlike the MRIs the model was trained on"
    )
    assert result.label is None and result.overlay_png is None and result.roi_box is None
    assert result.ood["score"] > result.ood["threshold"]


def test_a_close_call_reads_indeterminate_with_no_box(pipe, monkeypatch):
    monkeypatch.setitem(pipe.specialists["chest"].thresholds, "min_margin", 1.01)  # no read is clear enough
    result = pipe.run((FIXTURES / "chest_xray.jpg").read_bytes())
    assert not result.refused and result.indeterminate
    ranked = sorted(result.probabilities, key=result.probabilities.get, reverse=True)
    assert result.candidates == ranked[:2] and result.label == ranked[0]
    assert result.roi_box is None and result.overlay_png  # the heatmap stays, the box goes
    assert result.to_dict()["indeterminate"] is True


def test_a_dicom_with_nan_rescale_is_refused_not_routed(pipe):
    gray = np.asarray(Image.open(FIXTURES / "chest_xray.jpg").convert("L"), dtype=np.uint16) * 256
    ds = pydicom.dcmread(io.BytesIO(_dicom(gray, "MONOCHROME2", "CR")))
    ds.RescaleSlope, ds.RescaleIntercept = "NaN", 0
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    try:
        result = pipe.run(buf.getvalue())
    except DecodeError:
        return  # refused by the decoder: equally safe
    assert result.refused and result.refusal_code == "unreadable" and result.label is None
