"""Signed reports as FHIR R4: ``GET /api/v1/h/<slug>/reports/<id>/fhir``.

The Bundle is validated again here with ``fhir.resources`` (R4 4.0.1), resource by resource; a
signed report is ``final``, its signed amendment ``amended`` (same resource, next version), both
with the ImagingStudy, the Patient by MRN identifier, the signer, the SNOMED CT conclusion, the
PDF and the AI read's Observation with its Device.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from django_scopes import scopes_disabled
from fhir.resources import __fhir_version__
from fhir.resources.bundle import Bundle
from fhir.resources.diagnosticreport import DiagnosticReport

from apps.accounts.models import AuditEvent
from apps.integration.services import store_instance
from apps.reports import services as report_services
from apps.studies.storage import read_encrypted
from tests.factories import make_study
from tests.reports.helpers import make_diagnosis, write_report

from .helpers import chest_xray_dicom, uids

pytestmark = pytest.mark.django_db


def fhir(client, report, user):
    client.force_login(user)
    return client.get(f"/api/v1/h/{report.hospital.slug}/reports/{report.pk}/fhir")


def resources(bundle: dict) -> dict[str, dict]:
    return {entry["resource"]["resourceType"]: entry["resource"] for entry in bundle["entry"]}


def full_url(bundle: dict, resource_type: str) -> str:
    return next(e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type)


def _signed_with_ai(world, **fields):
    with scopes_disabled():
        study = make_study(world.paul_record, world.alice)
    make_diagnosis(study)
    report = write_report(study, world.alice, sign=True, **fields)
    with scopes_disabled():
        return report_services.render_report_pdf_now(report.pk)


def test_the_library_validates_fhir_r4():
    assert __fhir_version__ == "4.0.1"


def test_a_signed_then_amended_report_is_final_then_amended(client, world):
    v1 = _signed_with_ai(world, final_label="bacterial_pneumonia", impression="Right lower lobe consolidation.")
    first = fhir(client, v1, world.alice)
    assert first.status_code == 200
    assert first["Content-Type"] == "application/fhir+json"
    bundle = first.json()
    Bundle.parse_obj(bundle)  # valid R4
    report = DiagnosticReport.parse_obj(resources(bundle)["DiagnosticReport"])
    assert report.status == "final"
    assert report.meta.versionId == "1"
    assert report.conclusion == "Right lower lobe consolidation."
    assert [(c.system, c.code) for c in report.conclusionCode[0].coding] == [("http://snomed.info/sct", "53084003")]
    assert report.subject.identifier.value == "A-0001"
    assert report.subject.identifier.system == "urn:imagemedix:st-mary:mrn"
    assert report.subject.identifier.type.coding[0].code == "MR"
    assert report.resultsInterpreter[0].display == "Dr Alice Adams"
    assert report.resultsInterpreter[0].identifier.value == "alice@st-mary.example"
    assert report.imagingStudy[0].reference == full_url(bundle, "ImagingStudy")
    assert report.result[0].reference == full_url(bundle, "Observation")
    with scopes_disabled():
        pdf = read_encrypted(v1.pdf_name, v1.pdf_sha256)
    form = resources(bundle)["DiagnosticReport"]["presentedForm"][0]
    assert (form["contentType"], base64.b64decode(form["data"])) == ("application/pdf", pdf)
    assert form["hash"] == base64.b64encode(hashlib.sha1(pdf).digest()).decode()  # noqa: S324 - FHIR's choice

    observation = resources(bundle)["Observation"]
    assert observation["device"]["reference"] == full_url(bundle, "Device")
    assert observation["derivedFrom"][0]["reference"] == full_url(bundle, "ImagingStudy")
    assert observation["valueCodeableConcept"]["coding"][0]["code"] == "75570004"  # the AI said viral
    device = resources(bundle)["Device"]
    assert [v["component"]["value"] for v in device["version"]] == ["a" * 64, "b" * 64]  # the weight hashes
    assert [v["value"] for v in device["version"]] == ["reports-test", "reports-test"]
    assert [v["type"]["text"] for v in device["version"]] == ["Router", "Chest X-ray"]
    assert device["identifier"][0]["value"] == "router:reports-test+chest:reports-test"

    with scopes_disabled():
        amendment = report_services.amend_report(v1, world.alice, reason="The label was revised.")
        report_services.save_draft(
            amendment, world.alice, findings="", impression="Viral pattern on review.", final_label="viral_pneumonia"
        )
        report_services.sign_report(amendment, world.alice)
        amendment = report_services.render_report_pdf_now(amendment.pk)
    second = fhir(client, amendment, world.alice).json()
    Bundle.parse_obj(second)
    amended = resources(second)["DiagnosticReport"]
    assert amended["status"] == "amended"
    assert (amended["id"], amended["meta"]["versionId"]) == (resources(bundle)["DiagnosticReport"]["id"], "2")
    assert amended["identifier"] == resources(bundle)["DiagnosticReport"]["identifier"]
    assert amended["conclusionCode"][0]["coding"][0]["code"] == "75570004"
    assert amended["subject"] == resources(bundle)["DiagnosticReport"]["subject"]
    assert resources(second)["ImagingStudy"] == resources(bundle)["ImagingStudy"]  # the same study
    # The first version stays what it was when it was signed.
    assert resources(fhir(client, v1, world.alice).json())["DiagnosticReport"]["status"] == "final"
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="report.fhir_view", actor=world.alice).count() == 3


def test_a_study_from_the_pacs_names_its_dicom_uids(client, world):
    from apps.integration.credentials import create_credential

    data = chest_xray_dicom(patient_id="A-0001")
    study_uid, series_uid, sop_uid = uids(data)
    with scopes_disabled():
        store_instance(world.a, data, credential=create_credential(world.a, name="PACS", actor=None).credential)
        from apps.studies.models import Study

        study = Study.objects.get(dicom_instance__sop_instance_uid=sop_uid)
    report = write_report(study, world.alice, sign=True)
    imaging = resources(fhir(client, report, world.alice).json())["ImagingStudy"]
    assert imaging["identifier"][0] == {"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"}
    assert imaging["series"][0]["uid"] == series_uid
    assert imaging["series"][0]["instance"][0]["uid"] == sop_uid
    assert imaging["modality"][0]["code"] == "DX"


def test_a_refused_ai_read_is_an_observation_without_a_value(client, world):
    with scopes_disabled():
        study = make_study(world.paul_record, world.alice)
    make_diagnosis(study, refused=True, refusal_code="other_modality")
    report = write_report(study, world.alice, sign=True, final_label="Not assessable", impression="Wrong image.")
    bundle = fhir(client, report, world.alice).json()
    observation = resources(bundle)["Observation"]
    assert "valueCodeableConcept" not in observation
    assert observation["dataAbsentReason"]["coding"][0]["code"] == "unsupported"
    assert resources(bundle)["DiagnosticReport"]["conclusionCode"] == [{"text": "Not assessable"}]  # free text
    assert "presentedForm" not in resources(bundle)["DiagnosticReport"]  # the PDF is not rendered yet


def test_a_draft_has_no_fhir_form(client, world):
    with scopes_disabled():
        study = make_study(world.paul_record, world.alice)
    draft = write_report(study, world.alice)
    response = fhir(client, draft, world.alice)
    assert response.status_code == 409


def test_the_patient_reads_their_own_signed_report_others_get_404(client, world):
    report = _signed_with_ai(world)
    assert fhir(client, report, world.paul).status_code == 200
    assert fhir(client, report, world.bob).status_code == 404
    assert fhir(client, report, world.dora).status_code == 404
