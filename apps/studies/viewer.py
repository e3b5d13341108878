"""What the image viewer (static/js/viewer.js, templates/studies/_viewer.html) is told about a study:
where its pixels are, the window presets, the pixel spacing for lengths in mm, and the AI layers.

The page passes both dicts through ``json_script`` (no inline script); the viewer reads them.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from django.utils.formats import date_format
from django.utils.timezone import localtime

from apps.accounts.tenancy import Tenant
from apps.diagnosis.models import Diagnosis

from .models import Modality, Study

#: Windows over the 0-255 grey levels of a PNG/JPEG (the image as exported is all there is).
GREY8_PRESETS = (
    {"name": "As exported", "center": 127.5, "width": 255.0},
    {"name": "More contrast", "center": 127.5, "width": 128.0},
    {"name": "Dark detail", "center": 64.0, "width": 128.0},
    {"name": "Bright detail", "center": 192.0, "width": 128.0},
)
#: The usual CT windows (Hounsfield units), offered for a CT DICOM after the file's own windows.
CT_PRESETS = (
    {"name": "Lung", "center": -600.0, "width": 1500.0},
    {"name": "Mediastinum", "center": 40.0, "width": 400.0},
    {"name": "Bone", "center": 400.0, "width": 1800.0},
    {"name": "Brain", "center": 40.0, "width": 80.0},
)


def image_title(study: Study) -> str:
    """What the image is, in words: "Chest X-ray of Paul Potter, 3 Dec 2026"."""
    kind = study.get_modality_display() if study.modality and study.modality != Modality.UNSUPPORTED else "Image"
    return f"{kind} of {study.patient.full_name}, {date_format(localtime(study.created_at), 'j M Y')}"


def viewer_config(study: Study, *, label: str) -> dict[str, Any]:
    """The viewer's settings for ``study`` (the caller has checked that the user may see it)."""
    slug = study.hospital.slug
    display = study.dicom_display
    config: dict[str, Any] = {
        "imageUrl": reverse("studies:study_image", args=[slug, study.pk]),
        "valuesUrl": "",
        "width": study.width,
        "height": study.height,
        "invert": False,
        "pixelSpacing": None,
        "spacingSource": "",
        "label": label,
    }
    if "stored_min" in display:
        # A greyscale DICOM: window its stored values, with the file's own windows first.
        config["valuesUrl"] = reverse("studies:study_image_values", args=[slug, study.pk])
        config["values"] = {
            "storedMin": display["stored_min"],
            "slope": display.get("slope", 1.0),
            "intercept": display.get("intercept", 0.0),
        }
        windows = [
            {"name": w["name"] or f"From the file ({index + 1})", "center": w["center"], "width": w["width"]}
            for index, w in enumerate(display.get("windows", []))
        ]
        if study.dicom_modality.upper() == "CT":
            windows += list(CT_PRESETS)
        config["windows"] = windows
        config["invert"] = bool(display.get("monochrome1"))
    else:  # a PNG/JPEG, or the 8-bit rendering of a colour DICOM
        config["windows"] = list(GREY8_PRESETS)
    if display.get("pixel_spacing"):
        config["pixelSpacing"] = display["pixel_spacing"]
        config["spacingSource"] = display.get("spacing_source", "")
    return config


def viewer_layers(study: Study, diagnosis: Diagnosis | None) -> dict[str, Any]:
    """The AI layers over the image: the Grad-CAM map and the focal box (image pixels), if any."""
    if diagnosis is None or not diagnosis.has_heatmap:
        return {"heatmapUrl": "", "roi": None}
    return {
        "heatmapUrl": reverse("diagnosis:heatmap", args=[study.hospital.slug, study.pk]),
        "roi": diagnosis.roi_box,
    }


#: Most priors offered for comparison (the newest first).
MAX_PRIORS = 20


def prior_studies(tenant: Tenant, study: Study) -> list[Study]:
    """Earlier studies of the same patient and image type that the user may see, newest first
    (not those entered in error): what the reading screen offers to compare with. None for a
    study whose type is not known."""
    if study.modality in (Modality.UNKNOWN, Modality.UNSUPPORTED):
        return []
    priors = (
        Study.objects.visible_to(tenant)
        .in_record()
        .filter(patient_id=study.patient_id, modality=study.modality, created_at__lt=study.created_at)
    )
    return list(priors.select_related("patient", "hospital").order_by("-created_at", "-pk")[:MAX_PRIORS])
