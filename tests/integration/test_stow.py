"""STOW-RS: ``POST /dicomweb/h/<slug>/studies`` with a hospital's integration credential.

What arrives goes through the upload checks, is matched by Patient ID (MRN) within the hospital
(an unknown MRN waits in the unmatched queue: no patient is ever made up), is grouped by
StudyInstanceUID, and is stored once per SOP Instance UID. The answer is the STOW-RS response
dataset in DICOM JSON with the PS3.18 status codes; bad requests never cause a 500.
"""

from __future__ import annotations

import base64

import pytest
from django_scopes import scopes_disabled
from pydicom.uid import generate_uid

from apps.accounts.models import AuditEvent
from apps.integration.models import DicomInstance, DicomStudy, IntegrationCredential
from apps.studies.models import Patient, Study, StudyStatus

from .conftest import bearer
from .helpers import chest_xray_dicom, uids

pytestmark = pytest.mark.django_db

REFERENCED = "00081199"
FAILED = "00081198"
FAILURE_REASON = "00081197"
REFERENCED_SOP_INSTANCE = "00081155"
RETRIEVE_URL = "00081190"
RELATED_X = 'multipart/related; type="application/dicom"; boundary=x'


def items(response, tag: str) -> list[dict]:
    return response.json().get(tag, {}).get("Value", [])


def sop_of(item: dict) -> str:
    return item[REFERENCED_SOP_INSTANCE]["Value"][0]


def reason_of(item: dict) -> int:
    return item[FAILURE_REASON]["Value"][0]


def test_a_study_for_a_known_mrn_is_filed_under_that_patient_and_queued_for_the_ai(world, pacs, stow):
    first = chest_xray_dicom(patient_id="A-0001")
    study_uid, series_uid, sop = uids(first)
    second = chest_xray_dicom(patient_id="A-0001", study_uid=study_uid, series_uid=series_uid, instance_number=2)

    response = stow([first, second], auth=bearer(pacs.a))

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/dicom+json"
    assert {sop_of(i) for i in items(response, REFERENCED)} == {sop, uids(second)[2]}
    assert FAILED not in response.json()
    assert response.json()[RETRIEVE_URL]["Value"][0].endswith(f"/dicomweb/h/st-mary/studies/{study_uid}")
    instance_urls = [i[RETRIEVE_URL]["Value"][0] for i in items(response, REFERENCED)]
    assert f"/studies/{study_uid}/series/{series_uid}/instances/{sop}" in " ".join(instance_urls)
    with scopes_disabled():
        dicom_study = DicomStudy.objects.get(study_instance_uid=study_uid)
        assert (dicom_study.hospital, dicom_study.patient) == (world.a, world.paul_record)
        assert dicom_study.instances.count() == 2  # grouped by StudyInstanceUID
        studies = Study.objects.filter(dicom_instance__dicom_study=dicom_study)
        assert studies.count() == 2
        assert {s.patient for s in studies} == {world.paul_record}
        assert {s.status for s in studies} == {StudyStatus.QUEUED}
        assert {s.source_format for s in studies} == {"dicom"}
        assert all(s.uploaded_by is None for s in studies)
        stow_event = AuditEvent.objects.get(action="integration.stow")
        assert stow_event.hospital == world.a
        assert stow_event.detail["credential"] == pacs.a.credential.key_id
        assert stow_event.detail["stored"] == 2
        assert AuditEvent.objects.filter(action="study.upload", hospital=world.a).count() == 2


def test_the_same_sop_instance_twice_is_stored_once(world, pacs, stow):
    data = chest_xray_dicom()
    assert stow([data], auth=bearer(pacs.a)).status_code == 200
    again = stow([data], auth=bearer(pacs.a))
    assert again.status_code == 200
    assert [sop_of(i) for i in items(again, REFERENCED)] == [uids(data)[2]]
    with scopes_disabled():
        assert DicomInstance.objects.count() == 1
        assert Study.objects.filter(hospital=world.a).count() == 1
        assert AuditEvent.objects.filter(action="integration.stow").last().detail["already_stored"] == 0
        assert AuditEvent.objects.filter(action="integration.stow").first().detail["already_stored"] == 1


def test_a_sop_instance_uid_reused_in_another_study_is_refused(world, pacs, stow):
    data = chest_xray_dicom()
    stow([data], auth=bearer(pacs.a))
    clash = chest_xray_dicom(sop_uid=uids(data)[2])  # same SOP Instance UID, new study
    response = stow([clash], auth=bearer(pacs.a))
    assert response.status_code == 409
    assert reason_of(items(response, FAILED)[0]) == 0x0110
    with scopes_disabled():
        assert DicomInstance.objects.count() == 1


def test_an_unknown_mrn_waits_in_the_unmatched_queue_and_creates_no_patient(world, pacs, stow, media_files):
    data = chest_xray_dicom(patient_id="NOBODY-42", patient_name="DOE^JANE")
    with scopes_disabled():
        patients_before = Patient.objects.count()

    response = stow([data], auth=bearer(pacs.a))

    assert response.status_code == 200  # stored (held), so the PACS does not resend it
    with scopes_disabled():
        assert Patient.objects.count() == patients_before
        dicom_study = DicomStudy.objects.get()
        assert dicom_study.patient is None
        assert (dicom_study.sent_patient_id, dicom_study.sent_patient_name) == ("NOBODY-42", "DOE^JANE")
        instance = dicom_study.instances.get()
        assert instance.study is None and instance.held_file_name
        assert Study.objects.count() == 0  # no AI read before a person decides whose it is
        assert AuditEvent.objects.filter(action="integration.study_unmatched", hospital=world.a).exists()
    held = [f for f in media_files() if "integration" in f]
    assert len(held) == 1
    assert b"DOE^JANE" not in open(held[0], "rb").read()  # encrypted at rest like every file


def test_an_mrn_of_another_hospital_is_not_matched_there(world, pacs, stow):
    """Bea's MRN belongs to Riverside: sent to St Mary's it matches nobody."""
    response = stow([chest_xray_dicom(patient_id="B-0001")], auth=bearer(pacs.a))
    assert response.status_code == 200
    with scopes_disabled():
        assert DicomStudy.objects.get().patient is None
        assert not Study.objects.filter(patient=world.bea_record).exists()


def test_instances_of_one_study_must_name_one_patient(world, pacs, stow):
    first = chest_xray_dicom(patient_id="A-0001")
    study_uid = uids(first)[0]
    other_patient = chest_xray_dicom(patient_id="A-0002", study_uid=study_uid)
    response = stow([first, other_patient], auth=bearer(pacs.a))
    assert response.status_code == 202
    assert [sop_of(i) for i in items(response, REFERENCED)] == [uids(first)[2]]
    assert reason_of(items(response, FAILED)[0]) == 0x0110
    assert "Patient ID" in response["Warning"]
    with scopes_disabled():
        assert not Study.objects.filter(patient=world.other_a).exists()


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: chest_xray_dicom(WindowWidth="0"), 0xC000),  # window width 0 (the upload checks)
        (lambda: chest_xray_dicom(WindowCenter="NaN", WindowWidth="400"), 0xC000),
        (lambda: chest_xray_dicom(RescaleSlope="0"), 0xC000),
        (lambda: chest_xray_dicom(transfer_syntax="1.2.840.10008.1.2.4.90"), 0xC122),  # JPEG 2000
        (lambda: chest_xray_dicom()[:-500], 0xC000),  # truncated pixel data
    ],
    ids=["window-width-0", "window-centre-nan", "rescale-slope-0", "jpeg2000", "truncated"],
)
def test_instances_the_upload_checks_refuse_are_failed_sop_items(world, pacs, stow, make, reason, media_files):
    good = chest_xray_dicom()
    bad = make()
    response = stow([good, bad], auth=bearer(pacs.a))
    assert response.status_code == 202
    failed = items(response, FAILED)
    assert [(sop_of(i), reason_of(i)) for i in failed] == [(uids(bad)[2], reason)]
    assert response["Warning"].startswith('299 ImageMedix "')
    with scopes_disabled():
        assert DicomInstance.objects.count() == 1
        assert Study.objects.count() == 1
    assert len(media_files()) == 1  # nothing of the refused instance was kept


def test_an_instance_over_the_size_limit_is_refused(world, pacs, stow, settings):
    data = chest_xray_dicom()
    settings.UPLOAD_MAX_BYTES = len(data) - 1
    response = stow([data], auth=bearer(pacs.a))
    assert response.status_code == 409
    assert reason_of(items(response, FAILED)[0]) == 0xA700


def test_a_request_over_the_body_limit_is_413(world, pacs, stow, settings):
    settings.DICOMWEB_MAX_REQUEST_BYTES = 1000
    response = stow([chest_xray_dicom()], auth=bearer(pacs.a))
    assert response.status_code == 413


def test_non_dicom_parts_are_refused_and_the_rest_stored(world, pacs, stow):
    good = chest_xray_dicom()
    response = stow(
        [good, ("text/plain", b"hello"), ("application/dicom", b"\x00" * 128 + b"DICM" + b"junk")],
        auth=bearer(pacs.a),
    )
    assert response.status_code == 202
    assert [reason_of(i) for i in items(response, FAILED)] == [0xC000, 0xC000]
    assert [sop_of(i) for i in items(response, REFERENCED)] == [uids(good)[2]]


def test_only_non_dicom_parts_is_409(world, pacs, stow):
    response = stow([("application/dicom", b"%PDF-1.4 not an image")], auth=bearer(pacs.a))
    assert response.status_code == 409
    assert reason_of(items(response, FAILED)[0]) == 0xC000


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("application/dicom", b"anything", 415),
        ('multipart/related; type="application/dicom+json"; boundary=x', b"--x\r\n\r\n{}\r\n--x--", 415),
        ("multipart/form-data; boundary=x", b"--x\r\n\r\nx\r\n--x--", 415),
        ('multipart/related; type="application/dicom"', b"--x\r\n\r\nx\r\n--x--", 400),  # no boundary
        ('multipart/related; type="application/dicom"; boundary=x', b"no boundary anywhere", 400),
        (RELATED_X, b"--x\r\nContent-Type: application/dicom\r\n\r\nabc", 400),
        ('multipart/related; type="application/dicom"; boundary=x', b"--x--\r\n", 400),  # no parts
        # An empty POST carries no Content-Type at all (the test client drops it, as most clients do).
        ('multipart/related; type="application/dicom"; boundary=x', b"", 415),
    ],
    ids=["not-dicom", "dicom-json", "form-data", "no-boundary", "no-delimiters", "unterminated", "no-parts", "empty"],
)
def test_malformed_requests_get_a_clear_4xx(world, pacs, stow, content_type, body, status):
    response = stow(None, auth=bearer(pacs.a), content_type=content_type, body=body)
    assert response.status_code == status, response.content
    assert response.json()["error"]
    with scopes_disabled():
        assert DicomInstance.objects.count() == 0


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer imx_0000000000000000.wrong-secret",
        "Bearer not-a-credential",
        "Basic " + base64.b64encode(b"imx_0000000000000000:nope").decode(),
        "Basic %%%",
        "Token abc",
    ],
    ids=["none", "unknown-key", "garbage-bearer", "unknown-basic", "bad-base64", "other-scheme"],
)
def test_a_missing_or_wrong_credential_is_401(world, pacs, stow, authorization):
    auth = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = stow([chest_xray_dicom()], auth=auth)
    assert response.status_code == 401
    assert "Bearer" in response["WWW-Authenticate"]
    with scopes_disabled():
        assert DicomInstance.objects.count() == 0


def test_the_right_key_with_a_wrong_secret_is_401_and_audited(world, pacs, stow):
    auth = {"HTTP_AUTHORIZATION": f"Bearer {pacs.a.credential.key_id}.{'x' * 43}"}
    assert stow([chest_xray_dicom()], auth=auth).status_code == 401
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="integration.auth_failed", hospital=world.a).count() == 1


def test_basic_authentication_with_key_id_and_secret_works(world, pacs, stow):
    raw = f"{pacs.a.credential.key_id}:{pacs.a.secret}".encode()
    response = stow([chest_xray_dicom()], auth={"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(raw).decode()})
    assert response.status_code == 200


def test_a_revoked_credential_is_401(world, pacs, stow):
    from apps.integration.credentials import revoke_credential

    with scopes_disabled():
        revoke_credential(pacs.a.credential, actor=world.carol)
    assert stow([chest_xray_dicom()], auth=bearer(pacs.a)).status_code == 401


def test_another_hospitals_credential_is_403_and_stores_nothing(world, pacs, stow):
    response = stow([chest_xray_dicom(patient_id="A-0001")], auth=bearer(pacs.b))
    assert response.status_code == 403
    with scopes_disabled():
        assert DicomInstance.objects.count() == 0
        assert AuditEvent.objects.filter(action="integration.wrong_hospital", hospital=world.b).count() == 1


def test_a_credential_stores_only_into_its_own_hospital(world, pacs, stow):
    """Riverside's credential at Riverside: Paul's MRN there matches nobody (never St Mary's Paul)."""
    response = stow([chest_xray_dicom(patient_id="A-0001")], auth=bearer(pacs.b), hospital=world.b)
    assert response.status_code == 200
    with scopes_disabled():
        dicom_study = DicomStudy.objects.get()
        assert (dicom_study.hospital, dicom_study.patient) == (world.b, None)


def test_a_signed_in_doctor_cannot_store(client, world, stow):
    client.force_login(world.alice)
    response = stow([chest_xray_dicom()], auth={})
    assert response.status_code == 403


def test_credentials_are_stored_hashed(world, pacs):
    with scopes_disabled():
        row = IntegrationCredential.objects.get(pk=pacs.a.credential.pk)
    assert pacs.a.secret not in row.secret_sha256
    assert len(row.secret_sha256) == 64
    assert pacs.a.token.startswith(row.key_id + ".")


def test_unique_uids_in_a_big_request(world, pacs, stow):
    study_uid = generate_uid()
    parts = [chest_xray_dicom(study_uid=study_uid, instance_number=n) for n in range(1, 6)]
    response = stow(parts, auth=bearer(pacs.a))
    assert response.status_code == 200
    assert len(items(response, REFERENCED)) == 5
    with scopes_disabled():
        assert DicomStudy.objects.get().instances.count() == 5


def test_a_boundary_longer_than_rfc_2046_allows_is_accepted(world, pacs, stow):
    """Orthanc's boundaries are two UUIDs (73 characters), above RFC 2046's 70."""
    from .helpers import stow_body

    body, content_type = stow_body([chest_xray_dicom()], boundary="b" * 73)
    response = stow(None, auth=bearer(pacs.a), content_type=content_type, body=body)
    assert response.status_code == 200


def test_a_body_that_never_arrived_asks_for_a_content_length(client, world, pacs):
    """A chunked body that a plain WSGI server dropped: 411 says what to change, not "malformed"."""
    response = client.generic(
        "POST",
        "/dicomweb/h/st-mary/studies",
        b"",
        CONTENT_TYPE=RELATED_X,
        HTTP_TRANSFER_ENCODING="chunked",
        **bearer(pacs.a),
    )
    assert response.status_code == 411
    assert "ChunkedTransfers" in response.json()["error"]


def test_a_preamble_before_the_first_boundary_is_ignored(world, pacs, stow):
    """RFC 2046 allows text before the first delimiter (dicomweb-client sends a CRLF)."""
    from .helpers import stow_body

    body, content_type = stow_body([chest_xray_dicom()], boundary="x")
    response = stow(None, auth=bearer(pacs.a), content_type=content_type, body=b"This is a preamble.\r\n" + body)
    assert response.status_code == 200
