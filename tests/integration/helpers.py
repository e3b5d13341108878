"""DICOM files and STOW-RS bodies for the integration tests.

The image is the real chest X-ray of ``tests/fixtures`` (a test-split image, 192×192), wrapped
into a DICOM Part 10 file with pydicom the way a modality would send it.
"""

from __future__ import annotations

import datetime as dt
import io
import secrets
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
#: Digital X-Ray Image Storage - For Presentation.
DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"


def chest_xray_dicom(
    *,
    patient_id: str = "A-0001",
    patient_name: str = "POTTER^PAUL",
    birth_date: str = "19700101",
    sex: str = "M",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    instance_number: int = 1,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **attributes: object,
) -> bytes:
    """The fixture chest X-ray as an 8-bit DX instance; ``attributes`` set or override any keyword."""
    pixels = np.asarray(Image.open(FIXTURES / "chest_xray.jpg").convert("L"), dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientID = patient_id
    ds.PatientName = patient_name
    ds.PatientBirthDate = birth_date
    ds.PatientSex = sex
    ds.StudyDate = dt.date.today().strftime("%Y%m%d")
    ds.StudyTime = "101500"
    ds.AccessionNumber = "ACC" + secrets.token_hex(3)
    ds.StudyDescription = "Chest PA"
    ds.Modality = "DX"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    # A compressed syntax needs encapsulated frames (here: raw bytes, which its decoder refuses).
    ds.PixelData = encapsulate([pixels.tobytes()]) if UID(transfer_syntax).is_compressed else pixels.tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def uids(data: bytes) -> tuple[str, str, str]:
    """(study, series, SOP instance) UIDs of a DICOM file."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)


def stow_body(parts: Iterable[bytes | tuple[str, bytes]], boundary: str = "imx-test-boundary") -> tuple[bytes, str]:
    """A STOW-RS body and its Content-Type; a part is DICOM bytes or (content type, bytes)."""
    chunks = []
    for part in parts:
        content_type, data = part if isinstance(part, tuple) else ("application/dicom", part)
        chunks.append(f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'
