"""Encrypted file storage: every file ImageMedix keeps (images, heatmaps, PDFs) goes through here.

Files are encrypted with AES-256-GCM before they reach Django's storage API (local disk or S3),
so neither a stolen disk nor a misconfigured bucket shows patient data. Layout of a blob::

    b"IMXE1" | len(key_id) (1 byte) | key_id | 12-byte nonce | ciphertext+tag

The key id is also stored on the owning row, so keys can rotate: new files use the first key in
``FILE_ENCRYPTION_KEYS``, older ones still decrypt with theirs. The SHA-256 of the plaintext is
checked on every read; a mismatch (or a GCM tag failure) raises ``TamperedFileError``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

MAGIC = b"IMXE1"
AAD = b"imagemedix-file-v1"


class TamperedFileError(Exception):
    """The stored file does not decrypt, or does not match the hash recorded at upload."""


@dataclass(frozen=True)
class StoredBlob:
    name: str
    sha256: str
    key_id: str
    size: int


def encrypt(plaintext: bytes, key_id: str | None = None) -> tuple[bytes, str]:
    key_id = key_id or settings.FILE_ENCRYPTION_ACTIVE_KEY_ID
    key = settings.FILE_ENCRYPTION_KEYS[key_id]
    nonce = os.urandom(12)
    kid = key_id.encode()
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, AAD + kid)
    return MAGIC + bytes([len(kid)]) + kid + nonce + ciphertext, key_id


def decrypt(blob: bytes) -> bytes:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 1:
        raise TamperedFileError("The stored file is not an ImageMedix encrypted file.")
    kid_len = blob[len(MAGIC)]
    start = len(MAGIC) + 1
    kid = blob[start : start + kid_len]
    nonce = blob[start + kid_len : start + kid_len + 12]
    ciphertext = blob[start + kid_len + 12 :]
    key = settings.FILE_ENCRYPTION_KEYS.get(kid.decode(errors="replace"))
    if key is None:
        raise TamperedFileError(f"No decryption key with id {kid.decode(errors='replace')!r} is configured.")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, AAD + kid)
    except InvalidTag as exc:
        raise TamperedFileError("The stored file failed its integrity check.") from exc


def store_encrypted(data: bytes, *, folder: str, suffix: str = ".bin") -> StoredBlob:
    """Encrypt ``data`` and save it under ``folder`` with a random name. Returns what to record."""
    blob, key_id = encrypt(data)
    name = default_storage.save(f"{folder.strip('/')}/{uuid.uuid4().hex}{suffix}.enc", ContentFile(blob))
    return StoredBlob(name=name, sha256=hashlib.sha256(data).hexdigest(), key_id=key_id, size=len(data))


def read_encrypted(name: str, expected_sha256: str) -> bytes:
    """Read, decrypt and verify a stored file."""
    with default_storage.open(name, "rb") as fh:
        blob = fh.read()
    plaintext = decrypt(blob)
    if hashlib.sha256(plaintext).hexdigest() != expected_sha256:
        raise TamperedFileError("The stored file does not match the checksum recorded at upload.")
    return plaintext


def delete_stored(name: str) -> None:
    if name and default_storage.exists(name):
        default_storage.delete(name)
