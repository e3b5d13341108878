"""Factories for every model the tests need. Create tenant rows inside ``scopes_disabled()``
(the fixtures in conftest.py do)."""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import factory
import numpy as np
from PIL import Image

from apps.accounts.models import Hospital, Membership, Role, User
from apps.studies.models import Patient

TEST_PASSWORD = "correct-horse-battery-staple"


class HospitalFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Hospital
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Hospital {n}")
    slug = factory.Sequence(lambda n: f"hospital-{n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("email",)
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.org")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):  # noqa: N805
        if create:
            obj.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    hospital = factory.SubFactory(HospitalFactory)
    role = Role.DOCTOR


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    hospital = factory.SubFactory(HospitalFactory)
    mrn = factory.Sequence(lambda n: f"MRN{n:06d}")
    given_name = factory.Faker("first_name")
    family_name = factory.Faker("last_name")
    birth_date = dt.date(1980, 5, 17)
    sex = "F"


def png_bytes(size: tuple[int, int] = (64, 64), seed: int = 0) -> bytes:
    """A small valid greyscale PNG."""
    rng = np.random.default_rng(seed)
    arr = (rng.random((size[1], size[0])) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr, "L").save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(size: tuple[int, int] = (64, 64), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = (rng.random((size[1], size[0])) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr, "L").save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def dicom_bytes(
    *,
    bits: int = 16,
    photometric: str = "MONOCHROME2",
    rows: int = 64,
    cols: int = 64,
    transfer_syntax: str = "1.2.840.10008.1.2.1",
    modality: str = "CR",
    pixel_bytes: bytes | None = None,
    **attributes: Any,
) -> bytes:
    """A small valid single-frame greyscale DICOM (explicit VR little endian by default);
    ``attributes`` are set on the data set as they are (``WindowCenter=40``, ``PixelSpacing=[0.2, 0.2]``)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = "Test^Patient"
    ds.PatientID = "T-1"
    ds.Modality = modality
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = 12 if bits == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    if pixel_bytes is None:
        rng = np.random.default_rng(1)
        dtype = "<u2" if bits == 16 else "u1"
        top = 4095 if bits == 16 else 255
        pixel_bytes = (rng.random((rows, cols)) * top).astype(dtype).tobytes()
    ds.PixelData = pixel_bytes
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def make_study(patient: Patient, uploader: User, data: bytes | None = None, filename: str = "scan.png"):
    """A Study of ``patient`` uploaded by ``uploader``, made the real way: validated, stored
    encrypted and created through ``submit_study`` (``data`` defaults to a generated PNG)."""
    from django_scopes import scopes_disabled

    from apps.studies.services import submit_study
    from apps.studies.validation import validate_image_bytes

    upload = validate_image_bytes(data if data is not None else png_bytes())
    with scopes_disabled():
        return submit_study(patient, upload, original_filename=filename, actor=uploader)
