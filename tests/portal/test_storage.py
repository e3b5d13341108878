"""Encryption at rest: stored bytes are not the plaintext, and tampering is detected."""

import pytest
from django.core.files.storage import default_storage

from apps.studies.storage import TamperedFileError, read_encrypted, store_encrypted

from ..factories import png_bytes


def test_stored_bytes_are_encrypted_and_round_trip(settings):
    data = png_bytes()
    blob = store_encrypted(data, folder="t", suffix=".png")
    with default_storage.open(blob.name, "rb") as fh:
        raw = fh.read()
    assert data not in raw and raw[: len(data)] != data
    assert b"IHDR" not in raw  # no PNG structure visible
    assert blob.key_id == settings.FILE_ENCRYPTION_ACTIVE_KEY_ID
    assert read_encrypted(blob.name, blob.sha256) == data


def test_tampering_is_detected():
    blob = store_encrypted(b"x" * 1000, folder="t")
    path = default_storage.path(blob.name)
    raw = bytearray(open(path, "rb").read())
    raw[-20] ^= 0x01
    open(path, "wb").write(bytes(raw))
    with pytest.raises(TamperedFileError):
        read_encrypted(blob.name, blob.sha256)


def test_wrong_checksum_is_detected():
    blob = store_encrypted(b"payload", folder="t")
    with pytest.raises(TamperedFileError):
        read_encrypted(blob.name, "0" * 64)


def test_old_key_still_decrypts_after_rotation(settings):
    old = store_encrypted(b"before rotation", folder="t")
    settings.FILE_ENCRYPTION_KEYS = {"new": b"\x01" * 32, **settings.FILE_ENCRYPTION_KEYS}
    settings.FILE_ENCRYPTION_ACTIVE_KEY_ID = "new"
    new = store_encrypted(b"after rotation", folder="t")
    assert new.key_id == "new"
    assert read_encrypted(old.name, old.sha256) == b"before rotation"
    assert read_encrypted(new.name, new.sha256) == b"after rotation"


@pytest.mark.django_db
def test_world_personas(world):
    from django_scopes import scopes_disabled

    from apps.accounts.tenancy import resolve_tenant
    from apps.studies.access import caseload

    with scopes_disabled():
        assert list(caseload(resolve_tenant(world.alice, world.a.slug))) == [world.paul_record]
        assert list(caseload(resolve_tenant(world.bob, world.a.slug))) == []


@pytest.mark.django_db
def test_tampered_study_image_page_is_a_clear_409_and_audited(world, client):
    from django.urls import reverse
    from django_scopes import scopes_disabled

    from apps.accounts.models import AuditEvent

    from ..factories import make_study

    study = make_study(world.paul_record, world.alice)
    path = default_storage.path(study.file_name)
    raw = bytearray(open(path, "rb").read())
    raw[-5] ^= 0xFF
    open(path, "wb").write(bytes(raw))
    client.force_login(world.alice)
    response = client.get(reverse("studies:study_image", args=["st-mary", study.pk]))
    assert response.status_code == 409
    assert "integrity check" in response.content.decode()
    with scopes_disabled():
        assert AuditEvent.objects.filter(action="study.integrity_error", object_id=str(study.pk)).exists()
