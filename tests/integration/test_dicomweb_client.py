"""The DICOMweb endpoints through ``dicomweb-client``, a standard DICOMweb client, against the
portal running as a live HTTP server: STOW-RS, QIDO-RS (studies, instances) and WADO-RS
(instance, study, rendered), with the integration credential and with doctors' sessions."""

from __future__ import annotations

import io

import pydicom
import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from django_scopes import scopes_disabled
from PIL import Image

from apps.accounts.models import AuditEvent
from apps.integration.credentials import create_credential
from tests.auth import Client
from tests.celery_worker import dedicated_broker

from .helpers import chest_xray_dicom, uids

pytestmark = [pytest.mark.integration]


@pytest.fixture
def portal(live_server, transactional_db, redis_url, world):
    """The live portal; the AI reads its commits queue go to a queue of this run's own (no worker)."""
    with dedicated_broker(redis_url, "dicomweb-client"):
        yield live_server


def pacs_client(portal, world, hospital=None) -> tuple[DICOMwebClient, object]:
    issued = create_credential(hospital or world.a, name="Test PACS", actor=None)
    client = DICOMwebClient(
        url=f"{portal.url}/dicomweb/h/{world.a.slug}", headers={"Authorization": f"Bearer {issued.token}"}
    )
    return client, issued


def session_client(portal, world, user) -> DICOMwebClient:
    django_client = Client()
    django_client.force_login(user)
    session = requests.Session()
    session.cookies.set("sessionid", django_client.cookies["sessionid"].value)
    return DICOMwebClient(url=f"{portal.url}/dicomweb/h/{world.a.slug}", session=session)


def _dataset(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def test_store_search_and_retrieve_with_dicomweb_client(portal, world):
    client, issued = pacs_client(portal, world)
    data = chest_xray_dicom(patient_id="A-0001")
    study_uid, series_uid, sop_uid = uids(data)

    response = client.store_instances([_dataset(data)])
    assert [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence] == [sop_uid]
    assert "FailedSOPSequence" not in response

    studies = client.search_for_studies(search_filters={"PatientID": "A-0001"})
    assert [s["0020000D"]["Value"][0] for s in studies] == [study_uid]
    assert studies[0]["00100010"]["Value"][0]["Alphabetic"] == "Potter^Paul"  # the portal's record
    assert studies[0]["00201208"]["Value"] == [1]
    assert client.search_for_studies(search_filters={"PatientID": "A-0002"}) == []

    instances = client.search_for_instances(study_instance_uid=study_uid)
    assert [i["00080018"]["Value"][0] for i in instances] == [sop_uid]

    retrieved = client.retrieve_instance(study_uid, series_uid, sop_uid)
    assert retrieved.SOPInstanceUID == sop_uid
    assert retrieved.PixelData == _dataset(data).PixelData  # byte for byte what was stored
    assert [d.SOPInstanceUID for d in client.retrieve_study(study_uid)] == [sop_uid]

    png = client.retrieve_instance_rendered(study_uid, series_uid, sop_uid, media_types=("image/png",))
    image = Image.open(io.BytesIO(png))
    assert (image.format, image.size) == ("PNG", (192, 192))

    with scopes_disabled():
        uses = AuditEvent.objects.filter(hospital=world.a, detail__credential=issued.credential.key_id)
        assert {"integration.stow", "dicomweb.search", "dicomweb.retrieve", "dicomweb.retrieve_rendered"} <= set(
            uses.values_list("action", flat=True)
        )


def test_doctors_search_what_their_pages_show(portal, world):
    pacs, _ = pacs_client(portal, world)
    paul = chest_xray_dicom(patient_id="A-0001")
    olga = chest_xray_dicom(patient_id="A-0002")  # nobody's caseload
    pacs.store_instances([_dataset(paul), _dataset(olga)])

    alice = session_client(portal, world, world.alice)
    assert [s["0020000D"]["Value"][0] for s in alice.search_for_studies()] == [uids(paul)[0]]
    bob = session_client(portal, world, world.bob)
    assert bob.search_for_studies() == []
    with pytest.raises(requests.HTTPError) as refused:
        bob.retrieve_instance(*uids(paul))
    assert refused.value.response.status_code == 404
    carol = session_client(portal, world, world.carol)  # the hospital admin sees every patient
    assert len(carol.search_for_studies()) == 2
    # The PACS sees every matched study of its hospital.
    assert len(pacs.search_for_studies()) == 2


def test_unmatched_studies_are_not_served(portal, world):
    pacs, _ = pacs_client(portal, world)
    data = chest_xray_dicom(patient_id="NOT-HERE")
    pacs.store_instances([_dataset(data)])
    assert pacs.search_for_studies() == []
    with pytest.raises(requests.HTTPError) as missing:
        pacs.retrieve_instance(*uids(data))
    assert missing.value.response.status_code == 404


def test_another_hospitals_credential_is_refused_by_dicomweb_client(portal, world):
    client, _ = pacs_client(portal, world, hospital=world.b)
    with pytest.raises(requests.HTTPError) as refused:
        client.store_instances([_dataset(chest_xray_dicom())])
    assert refused.value.response.status_code == 403
    with pytest.raises(requests.HTTPError) as search:
        client.search_for_studies()
    assert search.value.response.status_code == 403


def test_qido_paging_and_unsupported_keys(portal, world):
    pacs, _ = pacs_client(portal, world)
    pacs.store_instances([_dataset(chest_xray_dicom(patient_id="A-0001")) for _ in range(3)])
    assert len(pacs.search_for_studies(limit=2)) == 2
    assert len(pacs.search_for_studies(limit=2, offset=2)) == 1
    with pytest.raises(requests.HTTPError) as bad:
        pacs.search_for_studies(search_filters={"ReferringPhysicianName": "X"})
    assert bad.value.response.status_code == 400
