"""``manage.py export_deidentified``: nothing in the export re-identifies a patient. Every byte of
every file written, and every DICOM element, is searched for the patients' names, MRNs, birth
dates, e-mails, accession numbers, original UIDs and file names; pseudonyms are consistent
within an export and not across exports; dates are shifted per patient; burned-in annotation is
flagged; the export is audited and only a hospital admin may ask for it."""

from __future__ import annotations

import csv
import datetime as dt
import io

import numpy as np
import pydicom
import pytest
from django.core.management import CommandError, call_command
from django_scopes import scopes_disabled
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from apps.accounts.models import AuditEvent
from apps.diagnosis import services
from apps.diagnosis.research_export import Pseudonymizer, suspect_burned_in_text
from apps.studies.models import Study
from tests.factories import PatientFactory, UserFactory, make_study

from .helpers import make_diagnosis

FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures"

NAME, FAMILY, MRN = "Johanna", "Quistgaard", "MRN-778899"
BIRTH = dt.date(1961, 4, 23)
EMAIL = "johanna.quistgaard@mail.example"
ACCESSION = "ACC-55443"
STUDY_UID = "1.2.826.0.1.3680043.8.498.1111111111"
SOP_UID = "1.2.826.0.1.3680043.8.498.2222222222"


def _dicom() -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = SOP_UID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, SOP_UID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, STUDY_UID + ".1"
    ds.PatientName = f"{FAMILY.upper()}^{NAME.upper()}"
    ds.PatientID, ds.OtherPatientIDs = MRN, "OTHER-778899"
    ds.PatientBirthDate, ds.PatientSex, ds.PatientAddress = BIRTH.strftime("%Y%m%d"), "F", "12 Harbour Lane"
    ds.AccessionNumber, ds.StudyID = ACCESSION, "ST-4242"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20260315"
    ds.StudyTime = "101500"
    ds.InstitutionName, ds.ReferringPhysicianName = "St Mary's Hospital", "WHO^DOCTOR"
    ds.StudyDescription = f"Chest of {NAME} {FAMILY}"
    ds.ImageComments = f"Call {EMAIL} with results"
    ds.BurnedInAnnotation = "NO"
    block = ds.private_block(0x0011, "ACME PACS", create=True)
    block.add_new(0x01, "LO", MRN)
    ds.Modality, ds.PhotometricInterpretation, ds.SamplesPerPixel = "CR", "MONOCHROME2", 1
    ds.Rows = ds.Columns = 64
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation = 15, 0
    yy, xx = np.mgrid[:64, :64]
    ds.PixelData = (1000 + 20 * xx + 10 * yy).astype(np.uint16).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _png_with_metadata() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", f"{NAME} {FAMILY}, {MRN}, born {BIRTH.isoformat()}")
    buf = io.BytesIO()
    Image.open(FIXTURES / "chest_xray.jpg").convert("L").save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _jpeg_with_burned_in_text() -> bytes:
    """A chest X-ray with the patient's name and date stamped in its top-left corner, as scanners do."""
    image = Image.open(FIXTURES / "chest_xray.jpg").convert("L").resize((512, 512))
    draw = ImageDraw.Draw(image)
    draw.text((12, 10), f"{FAMILY.upper()} {NAME.upper()} 23/04/1961", fill=255, font=ImageFont.load_default(size=18))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=95, comment=MRN.encode())
    return buf.getvalue()


@pytest.fixture
def labelled(world):
    """Three studies of one patient (DICOM, PNG with text chunks, JPEG with stamped text) and
    one of another, each reviewed by a doctor."""
    with scopes_disabled():
        user = UserFactory(email=EMAIL, full_name=f"{NAME} {FAMILY}")
        patient = PatientFactory(
            hospital=world.a, mrn=MRN, given_name=NAME, family_name=FAMILY, birth_date=BIRTH, user=user
        )
    from apps.studies import services as study_services

    with scopes_disabled():
        study_services.assign_doctor(patient, world.alice, actor=world.carol)
    uploads = [
        (_dicom(), f"{FAMILY}_{NAME}_chest.dcm"),
        (_png_with_metadata(), f"{NAME.lower()}-{MRN}.png"),
        (_jpeg_with_burned_in_text(), f"{FAMILY.lower()}.jpg"),
    ]
    studies = [make_study(patient, world.alice, data=data, filename=name) for data, name in uploads]
    other = make_study(world.paul_record, world.alice, data=(FIXTURES / "chest_xray.jpg").read_bytes())
    with scopes_disabled():
        # Two weeks between the first two of Johanna's studies: the interval must survive the shift.
        Study.objects.filter(pk=studies[0].pk).update(created_at=dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC))
        Study.objects.filter(pk=studies[1].pk).update(created_at=dt.datetime(2026, 3, 15, 10, tzinfo=dt.UTC))
        for study in [*studies, other]:
            services.confirm_diagnosis(make_diagnosis(study, label="normal"), world.alice)
    return patient, studies, other


def _export(world, out):
    call_command("export_deidentified", "--hospital", "st-mary", "--out", str(out), "--by", world.carol.email)
    return list(csv.DictReader(open(out / "labels.csv", encoding="utf-8")))


def _identifiers(studies) -> list[str]:
    # Study dates are not needles: a shifted date may by chance equal another study's real date
    # (today's study shifted by 264 days is 2026-03-15). The shift itself is asserted below.
    values = [
        NAME, FAMILY, MRN, "OTHER-778899", EMAIL, "quistgaard", ACCESSION, "ST-4242", STUDY_UID, SOP_UID,
        BIRTH.isoformat(), BIRTH.strftime("%Y%m%d"), BIRTH.strftime("%d/%m/%Y"), "12 Harbour Lane",
        "St Mary", "WHO^DOCTOR",
        *(s.original_filename for s in studies), "Potter", "A-0001", "paul@patient.example",
    ]  # fmt: skip
    return values


def test_nothing_in_the_export_re_identifies_a_patient(world, labelled, tmp_path):
    patient, studies, other = labelled
    out = tmp_path / "research"
    rows = _export(world, out)

    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(rows) == 4 and len(files) == 4 + 2  # images, labels.csv, README.txt
    needles = [v.lower().encode() for v in _identifiers([*studies, other])]
    for path in files:
        content = path.read_bytes().lower()
        found = [n.decode() for n in needles if n in content or n in str(path.relative_to(out)).lower().encode()]
        assert not found, f"{path.relative_to(out)} contains {found}"

    [dicom_row] = [r for r in rows if r["file"].endswith(".dcm")]
    ds = pydicom.dcmread(out / dicom_row["file"])
    for element in ds.iterall():
        text = str(element.value).lower()
        assert not any(n.decode() in text for n in needles), element
    assert not any(element.tag.is_private for element in ds.iterall())
    assert ds.PatientIdentityRemoved == "YES" and ds.PatientName == ds.PatientID == dicom_row["patient"]
    assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID != SOP_UID
    assert ds.pixel_array.shape == (64, 64)  # still a valid image

    # One pseudonym per patient; the interval between a patient's studies is kept.
    johanna = [r for r in rows if r["patient"] == dicom_row["patient"]]
    assert len(johanna) == 3 and len({r["patient"] for r in rows}) == 2
    dates = sorted(dt.date.fromisoformat(r["study_date"]) for r in johanna[:2])
    assert (dates[1] - dates[0]).days == 14
    shifted = dt.date(2026, 3, 15) - dt.date.fromisoformat(
        ds.StudyDate[:4] + "-" + ds.StudyDate[4:6] + "-" + ds.StudyDate[6:]
    )
    assert 30 <= shifted.days <= 395
    assert all(r["doctor_label"] == "normal" for r in rows)


def test_burned_in_annotation_is_flagged(world, labelled, tmp_path):
    rows = _export(world, tmp_path / "research")
    flags = {r["source_format"]: r["burned_in_text_suspected"] for r in rows if r["patient"] == rows[0]["patient"]}
    assert flags == {"dicom": "no", "png": "no", "jpeg": "yes"}


def test_the_heuristic_on_clean_and_annotated_images():
    for name in ("chest_xray.jpg", "brain_mri.jpg"):
        clean = np.asarray(Image.open(FIXTURES / name).convert("L"), np.float32) / 255
        assert not suspect_burned_in_text(clean), name
    stamped = Image.open(FIXTURES / "brain_mri.jpg").convert("L")
    ImageDraw.Draw(stamped).text((stamped.width - 170, stamped.height - 24), "L  2026-03-15  SE 4", fill=255)
    assert suspect_burned_in_text(np.asarray(stamped, np.float32) / 255)


def test_pseudonyms_come_from_a_secret_of_each_export(world, labelled, tmp_path):
    first = {r["patient"] for r in _export(world, tmp_path / "one")}
    second = {r["patient"] for r in _export(world, tmp_path / "two")}
    assert len(first) == len(second) == 2 and not first & second
    a, b = Pseudonymizer.fresh(), Pseudonymizer(b"k" * 32)
    assert a.patient(1) != b.patient(1) and b.patient(1) == Pseudonymizer(b"k" * 32).patient(1)


def test_the_export_is_audited_and_only_a_hospital_admin_may_ask(world, labelled, tmp_path):
    _, studies, other = labelled
    rows = _export(world, tmp_path / "research")
    with scopes_disabled():
        event = AuditEvent.objects.get(action="research.export_deidentified")
    assert event.actor == world.carol and event.hospital == world.a
    assert sorted(item["study"] for item in event.detail["exported"]) == sorted(s.pk for s in [*studies, other])
    assert sorted(item["file"] for item in event.detail["exported"]) == sorted(r["file"] for r in rows)

    for who in (world.alice.email, world.dora.email, "nobody@example.org"):
        with pytest.raises(CommandError, match="not an active hospital admin"):
            call_command("export_deidentified", "--hospital", "st-mary", "--out", str(tmp_path / "x"), "--by", who)
    with pytest.raises(CommandError, match="not empty"):
        _export(world, tmp_path / "research")

    with scopes_disabled():
        world.carol.memberships.filter(hospital=world.a).update(is_active=False)
    with pytest.raises(CommandError, match="not an active hospital admin"):
        call_command(
            "export_deidentified",
            "--hospital",
            "st-mary",
            "--out",
            str(tmp_path / "y"),
            "--by",
            "CAROL@st-mary.example",
        )
