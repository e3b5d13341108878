"""Large DICOM images are windowed on the reduced working copy: same geometry as reported, and
values within a hair of windowing every pixel first."""

import io

import cv2
import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from apps.diagnosis.pipeline.decode import decode_image


def _dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", **window) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "CR", photometric, 1
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    for key, value in window.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _smooth_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (2000 + 6000 * np.sin(xx / 97.0) ** 2 + 3000 * np.cos(yy / 131.0) ** 2).astype(np.uint16)


def test_large_dicom_is_windowed_on_the_working_copy():
    stored = _smooth_image(2048, 1600)
    data = _dicom(stored, WindowCenter=6000, WindowWidth=8000)
    reduced = decode_image(data, max_side=512)
    full = decode_image(data)
    assert (reduced.width, reduced.height) == (full.width, full.height) == (1600, 2048)
    assert full.pixels.shape == (2048, 1600)
    assert min(reduced.pixels.shape) == 512 and reduced.pixels.shape == (655, 512)
    # Windowing every pixel, then reducing, gives (almost) the same working copy.
    expected = cv2.resize(full.pixels, reduced.pixels.shape[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(reduced.pixels - expected).mean() < 2e-3
    assert reduced.pixels.dtype == np.float32 and 0 <= reduced.pixels.min() and reduced.pixels.max() <= 1


def test_monochrome1_is_inverted_on_the_working_copy_too():
    stored = _smooth_image(1200, 1200)
    plain = decode_image(_dicom(stored, WindowCenter=6000, WindowWidth=8000), max_side=512)
    inverted = decode_image(_dicom(stored, "MONOCHROME1", WindowCenter=6000, WindowWidth=8000), max_side=512)
    np.testing.assert_allclose(inverted.pixels, 1.0 - plain.pixels, atol=1e-6)


def test_small_dicom_is_not_reduced():
    stored = _smooth_image(700, 600)
    decoded = decode_image(_dicom(stored), max_side=512)
    assert decoded.pixels.shape == (700, 600)
