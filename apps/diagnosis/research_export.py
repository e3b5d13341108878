"""De-identified export of a hospital's labelled studies for research (``manage.py export_deidentified``).

What leaves, per study a doctor labelled: the image and one row of ``labels.csv``. What does not:
names, MRNs, birth dates, e-mails, accession numbers, original UIDs, original file names,
free-text descriptions, private DICOM tags, the real dates.

* **DICOM** files are de-identified by ``dicom-anonymizer`` (KitwareMedical), which applies the
  actions of DICOM PS3.15 Table E.1-1, the Basic Application Level Confidentiality Profile (its
  2026c table), and removes private tags. On top of the profile: the patient's name and ID become
  the pseudonym; UIDs are replaced by ``2.25.<HMAC>`` values (consistent within the export,
  unlinkable across exports); the study, series, acquisition and content dates are shifted by
  the patient's offset (the *Retain Longitudinal Temporal Information with Modified Dates*
  option) instead of being blanked. The result says so in De-identification Method (Code
  Sequence 113100 + 113107) and Patient Identity Removed = YES.
* **PNG/JPEG** files are decoded and written again as 8-bit greyscale PNG from the pixels only, so
  no text chunk, EXIF or comment survives.
* **Pseudonyms**: ``P-`` + HMAC-SHA256(secret, patient) and ``S-`` + HMAC-SHA256(secret, study),
  with a secret drawn for this export and never written anywhere, so the same patient has one id
  within an export and a different one in the next; nobody can recompute the link.
* **Dates** are shifted per patient by 30 to 395 days into the past (from the same HMAC), so the
  intervals between one patient's studies are kept.
* **Burned-in text** cannot be removed reliably, so it is flagged (``burned_in_text_suspected``):
  DICOM Burned In Annotation = YES, or a simple pixel heuristic (``suspect_burned_in_text``) that
  looks for a row of small, bright, glyph-sized blobs near the edges of the image. It is a
  heuristic, documented as such: it finds typical scanner annotations and misses text that is
  faint, large, rotated or mid-image. Flagged files should be checked by eye before release.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from apps.accounts import audit
from apps.accounts.models import Hospital
from apps.studies.models import SourceFormat, Study
from apps.studies.storage import read_encrypted

from .models import Diagnosis, Feedback, FeedbackAction
from .pipeline.decode import decode_image

#: The PS3.15 Table E.1-1 release dicom-anonymizer applies.
PROFILE_TABLE = "dicomfields_2026c"
DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
#: Shifts are 30 to 395 days into the past.
MIN_SHIFT_DAYS, SHIFT_RANGE_DAYS = 30, 366
LABEL_FIELDS = [
    "patient",
    "study",
    "file",
    "study_date",
    "kind",
    "source_format",
    "doctor_label",
    "ai_label",
    "ai_indeterminate",
    "ai_refused",
    "burned_in_text_suspected",
]


@dataclass
class Pseudonymizer:
    """Keyed, per-export pseudonyms and date shifts (the key is never stored)."""

    key: bytes

    @classmethod
    def fresh(cls) -> Pseudonymizer:
        return cls(secrets.token_bytes(32))

    def _digest(self, purpose: str, value: object) -> bytes:
        return hmac.new(self.key, f"{purpose}:{value}".encode(), hashlib.sha256).digest()

    def patient(self, patient_id: int) -> str:
        return "P-" + self._digest("patient", patient_id).hex()[:16]

    def study(self, study_id: int) -> str:
        return "S-" + self._digest("study", study_id).hex()[:16]

    def shift(self, patient_id: int) -> dt.timedelta:
        days = MIN_SHIFT_DAYS + int.from_bytes(self._digest("date", patient_id)[:8], "big") % SHIFT_RANGE_DAYS
        return -dt.timedelta(days=days)

    def uid(self, original: str) -> str:
        """A new UID for ``original``: 2.25 + a 128-bit decimal (PS3.5 B.2), the same within the export."""
        return "2.25." + str(int.from_bytes(self._digest("uid", original)[:16], "big"))


# --- burned-in text -------------------------------------------------------------------------------


def suspect_burned_in_text(pixels: np.ndarray) -> bool:
    """A heuristic for burned-in annotation in a greyscale image (float [0, 1], H×W).

    Text stamped on a radiograph is nearly white (or black), made of small separate glyphs of
    similar height standing side by side on a line, near an edge. So: take the nearly saturated
    pixels of each polarity in the outer bands of the image (a fifth of each side), find their
    connected blobs, keep the glyph-sized ones (4-60 px tall at a 1024 px long side, not much wider
    than tall), and flag the image when five or more of them line up (centres within half a glyph
    height of each other).
    """
    from scipy import ndimage

    h, w = pixels.shape
    scale = 1024 / max(h, w)
    if scale < 1:
        image = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8))
        pixels = (
            np.asarray(image.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR), np.float32) / 255
        )
        h, w = pixels.shape
    band = np.zeros((h, w), bool)
    bh, bw = max(1, h // 5), max(1, w // 5)
    band[:bh, :] = band[-bh:, :] = band[:, :bw] = band[:, -bw:] = True
    for mask in (pixels >= 0.92, pixels <= 0.03):
        labels, count = ndimage.label(mask & band)
        if count < 5:
            continue
        glyphs = []
        for region in ndimage.find_objects(labels):
            gh, gw = region[0].stop - region[0].start, region[1].stop - region[1].start
            if 4 <= gh <= 60 and 1 <= gw <= 1.5 * gh:
                glyphs.append(((region[0].start + region[0].stop) / 2, gh))
        glyphs.sort()
        for i, (centre, height) in enumerate(glyphs):
            line = [g for g in glyphs[i:] if g[0] - centre <= height / 2]
            if len(line) >= 5:
                return True
    return False


# --- the files --------------------------------------------------------------------------------------


def _shift_date(value: str, shift: dt.timedelta) -> str:
    try:
        return (dt.datetime.strptime(str(value)[:8], "%Y%m%d") + shift).strftime("%Y%m%d")
    except ValueError:
        return ""


def deidentify_dicom(data: bytes, pseudo: Pseudonymizer, patient: str, shift: dt.timedelta) -> tuple[bytes, bool]:
    """The de-identified DICOM file, and whether it says its pixels carry burned-in annotation."""
    import pydicom
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
    from dicomanonymizer.simpledicomanonymizer import anonymize_dataset, initialize_actions
    from pydicom.dataset import Dataset
    from pydicom.multival import MultiValue

    ds = pydicom.dcmread(io.BytesIO(data))
    dates = {kw: ds.get(kw) for kw in DATE_KEYWORDS if ds.get(kw)}
    burned_in = str(ds.get("BurnedInAnnotation", "")).upper() == "YES"

    def new_uid(dataset: Any, tag: tuple[int, int]) -> None:
        element = dataset.get(tag)
        if element is not None and element.value:
            values = element.value if isinstance(element.value, list | MultiValue) else [element.value]
            new = [pseudo.uid(str(v)) for v in values]
            element.value = new if len(new) > 1 else new[0]

    def pseudonym(dataset: Any, tag: tuple[int, int]) -> None:
        if dataset.get(tag) is not None:
            dataset[tag].value = patient

    table = dicom_anonymization_database_selector(PROFILE_TABLE)
    rules: dict[tuple[int, ...], Any] = {tag: new_uid for tag in table["U_TAGS"] + table["X_Z_U_STAR_TAGS"]}
    rules[(0x0010, 0x0010)] = rules[(0x0010, 0x0020)] = pseudonym
    anonymize_dataset(ds, rules, delete_private_tags=True, base_rules_gen=lambda: initialize_actions(PROFILE_TABLE))

    ds.PatientName, ds.PatientID = patient, patient
    for keyword, value in dates.items():
        setattr(ds, keyword, _shift_date(value, shift))
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "DICOM PS3.15 Basic Profile (dicom-anonymizer); dates shifted per patient"
    codes = []
    for value, meaning in (
        ("113100", "Basic Application Confidentiality Profile"),
        ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ):
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
        codes.append(code)
    ds.DeidentificationMethodCodeSequence = codes
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue(), burned_in


def raster_png(data: bytes) -> tuple[bytes, np.ndarray]:
    """PNG/JPEG → a new 8-bit greyscale PNG made from the pixels alone (no metadata survives)."""
    pixels = np.asarray(decode_image(data).pixels, dtype=np.float32)
    out = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0, 1) * 255).round().astype(np.uint8), "L").save(out, format="PNG")
    return out.getvalue(), pixels


# --- the export -------------------------------------------------------------------------------------


@dataclass
class ExportSummary:
    studies: int
    patients: int
    flagged: int
    files: list[str]


def labelled_studies(hospital: Hospital) -> list[tuple[Study, Diagnosis, str]]:
    """(study, its latest AI read, the doctor's label) of every study of ``hospital`` a doctor
    labelled; call inside the hospital's tenant scope."""
    found: dict[int, tuple[Study, Diagnosis, str]] = {}
    feedback = (
        Feedback.objects.filter(hospital=hospital)
        .select_related("diagnosis__study")
        .order_by("diagnosis__study_id", "-created_at", "-pk")
    )
    for fb in feedback:
        study = fb.diagnosis.study
        if study.pk not in found:
            label = fb.corrected_label if fb.action == FeedbackAction.CORRECT else fb.diagnosis.label
            found[study.pk] = (study, fb.diagnosis, label)
    return [found[k] for k in sorted(found)]


def export(hospital: Hospital, out_dir: Path, actor: Any) -> ExportSummary:
    """Write the hospital's labelled studies, de-identified, under ``out_dir`` (images in one
    folder per pseudonymous patient, ``labels.csv``, ``README.txt``) and audit what left. Call
    inside the hospital's tenant scope."""
    pseudo = Pseudonymizer.fresh()
    out_dir.mkdir(parents=True, exist_ok=True)
    rows, exported = [], []
    for study, diagnosis, label in labelled_studies(hospital):
        patient, shift = pseudo.patient(study.patient_id), pseudo.shift(study.patient_id)
        data = read_encrypted(study.file_name, study.file_sha256)
        name = pseudo.study(study.pk)
        if study.source_format == SourceFormat.DICOM:
            content, flagged = deidentify_dicom(data, pseudo, patient, shift)
            flagged = flagged or suspect_burned_in_text(decode_image(data).pixels)
            rel = f"{patient}/{name}.dcm"
        else:
            content, pixels = raster_png(data)
            flagged = suspect_burned_in_text(pixels)
            rel = f"{patient}/{name}.png"
        (out_dir / patient).mkdir(exist_ok=True)
        (out_dir / rel).write_bytes(content)
        rows.append(
            {
                "patient": patient,
                "study": name,
                "file": rel,
                "study_date": (study.created_at + shift).date().isoformat(),
                "kind": study.modality or diagnosis.route,
                "source_format": study.source_format,
                "doctor_label": label,
                "ai_label": "" if diagnosis.refused else diagnosis.label,
                "ai_indeterminate": "yes" if diagnosis.indeterminate else "no",
                "ai_refused": "yes" if diagnosis.refused else "no",
                "burned_in_text_suspected": "yes" if flagged else "no",
            }
        )
        exported.append({"study": study.pk, "file": rel, "burned_in_text_suspected": flagged})
    with open(out_dir / "labels.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=LABEL_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "README.txt").write_text(README, encoding="utf-8")
    patients = len({r["patient"] for r in rows})
    flagged_count = sum(1 for r in rows if r["burned_in_text_suspected"] == "yes")
    audit.record(
        "research.export_deidentified",
        hospital=hospital,
        actor=actor,
        destination=str(out_dir),
        studies=len(rows),
        patients=patients,
        burned_in_text_suspected=flagged_count,
        exported=exported,
    )
    return ExportSummary(len(rows), patients, flagged_count, [r["file"] for r in rows])


README = """De-identified imaging export (ImageMedix).

labels.csv: one row per study a doctor labelled. patient and study are pseudonyms drawn with a
secret used for this export only (not kept): they are consistent within this export and cannot
be linked to the hospital's records or to another export. study_date and the DICOM dates are
shifted into the past by a per-patient offset of 30 to 395 days (intervals within one patient
are kept). DICOM files follow the DICOM PS3.15 Basic Application Level Confidentiality Profile
(private tags removed); PNG files hold the pixels only.

burned_in_text_suspected = yes: the image may show text stamped into its pixels (names, dates),
which this export cannot remove. The check is a heuristic: review every image before release.
"""
