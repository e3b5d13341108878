"""Integration routes: the hospital admin's PACS pages under /h/<slug>/ and the DICOMweb endpoints
under /dicomweb/h/<slug>/ (signed-in personas here; the integration credential, the PACS's own
way in, is tested in tests/integration/).

Who gets what (hospital A):
* Carol (hospital admin): the credentials and unmatched-queue pages and forms.
* Alice (Paul's doctor): DICOMweb search and retrieval of Paul's studies; never storing (403:
  storing takes the integration credential); not the admin pages (403).
* Bob (unassigned doctor): DICOMweb searches answer an empty list; Paul's study and instances 404.
* Paul (patient user): 403 everywhere (DICOMweb is for clinicians and the PACS).
* Dora (hospital B): 404 everywhere in hospital A. Anonymous: 302 on pages, 401 on DICOMweb and
  the API.
* The FHIR form of a signed report: like the report itself (Alice, Carol, and Paul for his own).
"""

from __future__ import annotations

from typing import Any

from tests.routes import Route


def _credential(w: Any) -> Any:
    from apps.integration.credentials import create_credential

    return create_credential(w.a, name="Orthanc", actor=w.carol)


def _stored(w: Any, patient_id: str = "A-0001") -> Any:
    """A DicomInstance sent by A's PACS (Paul's by default: matched and read like an upload)."""
    from apps.integration.services import store_instance
    from tests.integration.helpers import chest_xray_dicom, uids

    data = chest_xray_dicom(patient_id=patient_id)
    outcome = store_instance(w.a, data, credential=_credential(w).credential)
    assert outcome.stored, outcome.reason
    return uids(data)


def _study_uid(w: Any) -> dict[str, Any]:
    return {"study": _stored(w)[0]}


def _instance_uids(w: Any) -> dict[str, Any]:
    study, series, instance = _stored(w)
    return {"study": study, "series": series, "instance": instance}


def _unmatched(w: Any) -> dict[str, Any]:
    from apps.integration.models import DicomStudy

    study_uid = _stored(w, patient_id="UNKNOWN-1")[0]
    return {"pk": DicomStudy.objects.get(study_instance_uid=study_uid).pk}


def _signed_report(w: Any) -> dict[str, Any]:
    from tests.reports.helpers import signed_report

    return {"pk": signed_report(w.paul_record, w.alice, with_pdf=False).pk}


def _lists_paul(response: Any, world: Any) -> None:
    assert any(study["00100020"]["Value"] == ["A-0001"] for study in response.json()), response.json()


ADMIN_PAGE = {"anon": 302, "patient": 403, "unassigned_doctor": 403, "other_hospital_doctor": 404}
DICOMWEB = {"anon": 401, "patient": 403, "other_hospital_doctor": 404}

ROUTES = [
    Route("integration:credentials", **ADMIN_PAGE, owner=("carol", 200)),
    Route(
        "integration:credentials", method="POST", data=lambda w: {"name": "Orthanc"}, **ADMIN_PAGE, owner=("carol", 201)
    ),
    Route(
        "integration:credential_revoke",
        method="POST",
        kwargs=lambda w: {"pk": _credential(w).credential.pk},
        **ADMIN_PAGE,
        owner=("carol", 302),
    ),
    Route("integration:unmatched", **ADMIN_PAGE, owner=("carol", 200)),
    Route("integration:unmatched_detail", kwargs=_unmatched, **ADMIN_PAGE, owner=("carol", 200)),
    Route(
        "integration:unmatched_detail",
        method="POST",
        kwargs=_unmatched,
        data=lambda w: {"action": "link", "patient": w.paul_record.pk},
        **ADMIN_PAGE,
        owner=("carol", 302),
    ),
    # QIDO-RS searches list what the person may see: nothing of Paul's for Bob.
    Route("dicomweb:studies", kwargs=lambda w: _stored(w) and {}, **DICOMWEB, unassigned_doctor=200, check=_lists_paul),
    Route("dicomweb:instances", kwargs=lambda w: _stored(w) and {}, **DICOMWEB, unassigned_doctor=200),
    # STOW-RS with a session: nobody (the PACS stores with its credential).
    Route(
        "dicomweb:studies",
        method="POST",
        label="session users do not store",
        **DICOMWEB,
        unassigned_doctor=403,
        owner=("alice", 403),
    ),
    Route("dicomweb:study_instances", kwargs=_study_uid, **DICOMWEB),
    Route("dicomweb:study", kwargs=_study_uid, **DICOMWEB),
    Route("dicomweb:instance", kwargs=_instance_uids, **DICOMWEB),
    Route("dicomweb:instance_rendered", kwargs=_instance_uids, **DICOMWEB),
    # A signed report as FHIR: whoever may read the report (Paul reads his own signed reports).
    Route("integration_api:report-fhir", kwargs=_signed_report, anon=401, patient=200),
]
