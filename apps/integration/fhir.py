"""Signed reports as HL7 FHIR R4 (4.0.1): a Bundle with the DiagnosticReport, the ImagingStudy it
reads, the AI read as an Observation, and the Device (model versions and weight hashes) that made it.

* ``DiagnosticReport``: ``status`` ``final`` for a first signed version, ``amended`` for a signed
  amendment; every version of one report shares the resource id and identifier (an amendment is
  a new version of the same resource, ``meta.versionId``). ``subject`` is the Patient by MRN
  identifier (the record system holds the Patient; the portal does not invent one);
  ``resultsInterpreter`` is the signing doctor; ``conclusion`` the impression; ``conclusionCode``
  the final label in SNOMED CT (``snomed_ct.json``); ``presentedForm`` the signed PDF.
* ``Observation``: the AI read the report was signed with (the newest read before signing).
* Everything is validated with ``fhir.resources`` (R4 4.0.1) before it leaves; a resource the
  library refuses raises instead of being sent.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from fhir.resources.bundle import Bundle

from apps.diagnosis.models import Diagnosis
from apps.reports.ai import display_label
from apps.reports.models import Report
from apps.studies.models import Modality, Study
from apps.studies.storage import read_encrypted

from .models import DicomInstance

FHIR_MEDIA_TYPE = "application/fhir+json"
DICOM_UID_SYSTEM = "urn:dicom:uid"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
LOINC_SYSTEM = "http://loinc.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
UCUM = "http://unitsofmeasure.org"
WEIGHTS_SYSTEM = "urn:imagemedix:model-weights-sha256"
ASSISTIVE_NOTE = "Assistive AI result, not a diagnosis. The signing doctor's conclusion is the report's."
#: DICOM modality codes for the portal's image kinds.
DICOM_MODALITY: dict[str, str] = {Modality.CHEST_XRAY: "DX", Modality.BRAIN_MRI: "MR"}


class NotExportable(Exception):
    """Only signed reports are results; a draft has no FHIR form."""


@cache
def snomed() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("snomed_ct.json")).read_text())


def coded_label(label: str) -> dict[str, Any]:
    """A label as a CodeableConcept: SNOMED CT when the mapping has it, always with the text people read."""
    concept: dict[str, Any] = {"text": display_label(label) or label}
    mapped = snomed()["labels"].get(label)
    if mapped is not None:
        concept["coding"] = [{"system": snomed()["system"], "code": mapped["code"], "display": mapped["display"]}]
    return concept


def _system(report_or_study: Report | Study, kind: str) -> str:
    return f"urn:imagemedix:{report_or_study.hospital.slug}:{kind}"


def _full_url(*parts: object) -> str:
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "imagemedix:" + ":".join(map(str, parts))))


def _patient_reference(report: Report) -> dict[str, Any]:
    patient = report.patient
    return {
        "type": "Patient",
        "identifier": {
            "type": {"coding": [{"system": V2_0203, "code": "MR", "display": "Medical record number"}]},
            "system": _system(report, "mrn"),
            "value": patient.mrn,
        },
        "display": patient.full_name,
    }


def first_version(report: Report) -> Report:
    """The version 1 of the report's chain: its id is the resource id of every version."""
    while report.supersedes_id is not None:
        report = Report.objects.select_related("supersedes").get(pk=report.supersedes_id)
    return report


def signed_with(report: Report) -> Diagnosis | None:
    """The AI read the report was signed with: the newest one of the study before signing."""
    return (
        Diagnosis.objects.filter(
            hospital_id=report.hospital_id, study_id=report.study_id, created_at__lte=report.signed_at
        )
        .select_related("router_version", "specialist_version")
        .order_by("-created_at", "-pk")
        .first()
    )


def _imaging_study(report: Report) -> dict[str, Any]:
    study = report.study
    instance = (
        DicomInstance.objects.filter(hospital_id=study.hospital_id, study=study).select_related("dicom_study").first()
    )
    modality_code = study.dicom_modality or DICOM_MODALITY.get(study.modality, "OT")
    modality = {"system": DCM_SYSTEM, "code": modality_code}
    identifiers = [{"system": _system(report, "study"), "value": str(study.pk)}]
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "status": "available",
        "subject": _patient_reference(report),
        "started": study.created_at.isoformat(),
        "modality": [modality],
        "numberOfSeries": 1,
        "numberOfInstances": 1,
    }
    if instance is not None:
        identifiers.insert(
            0, {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{instance.dicom_study.study_instance_uid}"}
        )
        resource["series"] = [
            {
                "uid": instance.series_instance_uid,
                "modality": modality,
                "instance": [
                    {
                        "uid": instance.sop_instance_uid,
                        "sopClass": {"system": "urn:ietf:rfc:3986", "code": f"urn:oid:{instance.sop_class_uid}"},
                    }
                ],
            }
        ]
    resource["identifier"] = identifiers
    return resource


def _device(report: Report, diagnosis: Diagnosis) -> dict[str, Any]:
    versions = [(diagnosis.router_version, diagnosis.router_sha256)]
    if diagnosis.specialist_version is not None:
        versions.append((diagnosis.specialist_version, diagnosis.specialist_sha256))
    return {
        "resourceType": "Device",
        "identifier": [
            {
                "system": "urn:imagemedix:ai-model-set",
                "value": "+".join(f"{version.task}:{version.version}" for version, _ in versions),
            }
        ],
        "deviceName": [{"name": "ImageMedix AI second read", "type": "user-friendly-name"}],
        "type": {"text": "Image analysis software: two-stage convolutional network (router, specialist)"},
        "version": [
            {
                "type": {"text": display_label(version.task) or version.task},
                "component": {"system": WEIGHTS_SYSTEM, "value": sha or version.weights_sha256},
                "value": version.version,
            }
            for version, sha in versions
        ],
        "note": [{"text": ASSISTIVE_NOTE}],
    }


def _observation(report: Report, diagnosis: Diagnosis, imaging_url: str, device_url: str) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "identifier": [{"system": _system(report, "ai-read"), "value": str(diagnosis.pk)}],
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging", "display": "Imaging"}]}],
        "code": {"text": "AI second read (assistive)"},
        "subject": _patient_reference(report),
        "issued": diagnosis.created_at.isoformat(),
        "derivedFrom": [{"reference": imaging_url, "type": "ImagingStudy"}],
        "device": {"reference": device_url, "type": "Device"},
        "note": [{"text": ASSISTIVE_NOTE}],
    }
    if diagnosis.refused:
        resource["dataAbsentReason"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unsupported"}],
            "text": diagnosis.refusal_reason or "Not read by the AI.",
        }
    elif diagnosis.indeterminate:
        resource["valueCodeableConcept"] = {"text": diagnosis.label_display}
    else:
        resource["valueCodeableConcept"] = coded_label(diagnosis.label)
    if not diagnosis.refused:
        resource["component"] = [
            {
                "code": coded_label(label),
                "valueQuantity": {"value": round(probability, 4), "unit": "probability", "system": UCUM, "code": "1"},
            }
            for label, probability in diagnosis.sorted_probabilities
        ]
    return resource


def _presented_form(report: Report) -> list[dict[str, Any]]:
    if not report.pdf_ready:
        return []
    pdf = read_encrypted(report.pdf_name, report.pdf_sha256)
    return [
        {
            "contentType": "application/pdf",
            "language": "en",
            "data": base64.b64encode(pdf).decode(),
            "size": len(pdf),
            "hash": base64.b64encode(hashlib.sha1(pdf).digest()).decode(),  # noqa: S324 - FHIR defines it as SHA-1
            "title": f"ImageMedix report, version {report.version}",
            "creation": report.pdf_rendered_at.isoformat() if report.pdf_rendered_at else None,
        }
    ]


def _diagnostic_report(report: Report, imaging_url: str, observation_url: str | None, first: Report) -> dict[str, Any]:
    signer = report.signed_by
    assert signer is not None and report.signed_at is not None  # report_bundle sends signed reports only
    resource: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": f"report-{first.pk}",
        "meta": {"versionId": str(report.version), "lastUpdated": report.signed_at.isoformat()},
        "identifier": [{"system": _system(report, "report"), "value": str(first.pk)}],
        "status": "amended" if report.supersedes_id is not None else "final",
        "category": [{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "RAD", "display": "Radiology"}]}],
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": "18748-4", "display": "Diagnostic imaging study"}]},
        "subject": _patient_reference(report),
        "effectiveDateTime": report.study.created_at.isoformat(),
        "issued": report.signed_at.isoformat(),
        "resultsInterpreter": [
            {
                "type": "Practitioner",
                "identifier": {"system": "urn:imagemedix:user", "value": signer.email},
                "display": signer.display_name,
            }
        ],
        "imagingStudy": [{"reference": imaging_url, "type": "ImagingStudy"}],
        "conclusion": report.impression,
        "conclusionCode": [coded_label(report.final_label)],
    }
    if observation_url is not None:
        resource["result"] = [{"reference": observation_url, "type": "Observation"}]
    presented = _presented_form(report)
    if presented:
        resource["presentedForm"] = [{k: v for k, v in form.items() if v is not None} for form in presented]
    return resource


def report_bundle(report: Report, *, transaction: bool = False) -> dict[str, Any]:
    """The signed ``report`` as a validated FHIR R4 Bundle (JSON-ready dict).

    ``transaction``: a transaction Bundle for a FHIR server, each resource a conditional update on
    its identifier, so sending a report again, or its amendment, updates rather than duplicates.
    """
    if not report.is_signed or report.signed_at is None or report.signed_by is None:
        raise NotExportable("Only signed reports are sent as FHIR; this one is a draft.")
    first = first_version(report)
    diagnosis = signed_with(report)
    slug = report.hospital.slug
    imaging_url = _full_url(slug, "ImagingStudy", report.study_id)
    resources: list[tuple[str, dict[str, Any]]] = [(imaging_url, _imaging_study(report))]
    observation_url = None
    if diagnosis is not None:
        device_url = _full_url(slug, "Device", diagnosis.versions_key)
        observation_url = _full_url(slug, "Observation", diagnosis.pk)
        resources.append((device_url, _device(report, diagnosis)))
        resources.append((observation_url, _observation(report, diagnosis, imaging_url, device_url)))
    report_url = _full_url(slug, "DiagnosticReport", first.pk, report.version)
    resources.insert(0, (report_url, _diagnostic_report(report, imaging_url, observation_url, first)))

    entries = []
    for full_url, resource in resources:
        entry: dict[str, Any] = {"fullUrl": full_url, "resource": resource}
        if transaction:
            identifier = resource["identifier"][0]
            entry["request"] = {
                "method": "PUT",
                "url": f"{resource['resourceType']}?identifier={identifier['system']}|{identifier['value']}",
            }
            resource.pop("id", None)  # a conditional update names the resource by identifier
        entries.append(entry)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction" if transaction else "collection",
        "timestamp": report.signed_at.isoformat(),
        "entry": entries,
    }
    return json.loads(Bundle.parse_obj(bundle).json())
