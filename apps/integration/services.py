"""State changes of the PACS integration: storing an instance that arrived over STOW-RS, and a
hospital admin resolving an unmatched study (link it to a patient, or create the patient).

An instance goes through the upload path of ``apps.studies`` (``validate_image_bytes``, then
``submit_study``: encrypted file, Study row, AI read queued on commit) as soon as its study's
patient is known. The patient is found by Patient ID (MRN) in the sending hospital only; when
no patient there has that MRN, the instance is held (encrypted, no Study, no AI read) in the
unmatched queue until a hospital admin decides. Nothing here ever creates a patient on its own.
"""

from __future__ import annotations

import io
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts import audit
from apps.accounts.models import Hospital
from apps.studies import services as study_services
from apps.studies.models import Patient
from apps.studies.storage import delete_stored, read_encrypted, store_encrypted
from apps.studies.validation import ALLOWED_TRANSFER_SYNTAXES, UploadRejected, validate_image_bytes

from .models import DicomInstance, DicomStudy, IntegrationCredential

log = logging.getLogger(__name__)


class FailureReason:
    """STOW-RS Failure Reason (0008,1197) codes (DICOM PS3.18 and PS3.4)."""

    #: Processing failure: the instance contradicts what is already stored (another study, another patient).
    PROCESSING_FAILURE = 0x0110
    #: Out of resources: larger than this server accepts.
    OUT_OF_RESOURCES = 0xA700
    #: Cannot understand: not DICOM, damaged, or refused by the upload checks.
    CANNOT_UNDERSTAND = 0xC000
    #: The transfer syntax is not one this server can decode.
    TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122


class InstanceRefs(TypedDict):
    """The four UIDs that name an instance, as it was sent (StoreOutcome's first fields)."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str


@dataclass(frozen=True)
class StoreOutcome:
    """What happened to one instance of a STOW-RS request."""

    sop_class_uid: str = ""
    sop_instance_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    #: A Failure Reason code when the instance was refused, else None.
    failure: int | None = None
    #: Why it was refused, in words (for the Warning header, the log and the audit trail).
    reason: str = ""
    #: Already stored before (the same SOP Instance UID): nothing changed.
    duplicate: bool = False
    #: Stored but waiting in the unmatched queue (its patient is not known yet).
    held: bool = False

    @property
    def stored(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class _Header:
    """What the portal reads from an instance's DICOM header."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    transfer_syntax_uid: str
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    accession_number: str
    study_date: str
    study_time: str
    description: str
    modality: str
    instance_number: int | None
    series_number: int | None
    rows: int | None
    columns: int | None


def _text(ds: Any, keyword: str, limit: int) -> str:
    """A text attribute, without its padding; ``UploadRejected`` for a NUL inside it (DICOM pads
    with NUL at the end only, and PostgreSQL stores no NUL in text)."""
    value = ds.get(keyword, "")
    text = str(value if value is not None else "").strip().rstrip("\x00").strip()
    if "\x00" in text:
        raise UploadRejected(f"The {keyword} in this instance's DICOM header contains a NUL character.")
    return text[:limit]


def _integer(ds: Any, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _valid_uid(value: str) -> bool:
    from pydicom.uid import UID

    return bool(value) and len(value) <= 64 and UID(value).is_valid


def read_header(data: bytes) -> _Header:
    """The identifying attributes of a DICOM Part 10 file; ``UploadRejected`` if it is not one."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        meta = ds.file_meta
        header = _Header(
            sop_class_uid=_text(ds, "SOPClassUID", 64) or _text(meta, "MediaStorageSOPClassUID", 64),
            sop_instance_uid=_text(ds, "SOPInstanceUID", 64) or _text(meta, "MediaStorageSOPInstanceUID", 64),
            study_instance_uid=_text(ds, "StudyInstanceUID", 64),
            series_instance_uid=_text(ds, "SeriesInstanceUID", 64),
            transfer_syntax_uid=_text(meta, "TransferSyntaxUID", 64),
            patient_id=_text(ds, "PatientID", 64),
            patient_name=_text(ds, "PatientName", 200),
            birth_date=_text(ds, "PatientBirthDate", 8),
            sex=_text(ds, "PatientSex", 16),
            accession_number=_text(ds, "AccessionNumber", 16),
            study_date=_text(ds, "StudyDate", 8),
            study_time=_text(ds, "StudyTime", 16),
            description=_text(ds, "StudyDescription", 64),
            modality=_text(ds, "Modality", 16),
            instance_number=_integer(ds, "InstanceNumber"),
            series_number=_integer(ds, "SeriesNumber"),
            rows=_integer(ds, "Rows"),
            columns=_integer(ds, "Columns"),
        )
    except UploadRejected:
        raise
    except Exception:  # noqa: BLE001 - pydicom raises many types on hostile input; a refusal, never a 500
        raise UploadRejected("This part is not a readable DICOM file.") from None
    return header


def store_instance(
    hospital: Hospital,
    data: bytes,
    *,
    credential: IntegrationCredential,
    request: HttpRequest | None = None,
) -> StoreOutcome:
    """Store one instance sent by ``credential`` for ``hospital`` (inside its tenant scope).

    Never raises for bad input: a refused instance comes back with a Failure Reason.
    """
    try:
        header = read_header(data)
    except UploadRejected as exc:
        return StoreOutcome(failure=FailureReason.CANNOT_UNDERSTAND, reason=exc.messages[0])
    refs: InstanceRefs = {
        "sop_class_uid": header.sop_class_uid,
        "sop_instance_uid": header.sop_instance_uid,
        "study_instance_uid": header.study_instance_uid,
        "series_instance_uid": header.series_instance_uid,
    }
    missing = [name for name, value in refs.items() if not _valid_uid(str(value))]
    if missing:
        return StoreOutcome(
            **refs,
            failure=FailureReason.CANNOT_UNDERSTAND,
            reason="The instance has no valid " + ", ".join(m.replace("_", " ") for m in missing) + ".",
        )

    existing = _existing(hospital, header, refs)
    if existing is not None:
        return existing
    if len(data) > settings.UPLOAD_MAX_BYTES:
        return StoreOutcome(
            **refs, failure=FailureReason.OUT_OF_RESOURCES, reason="The instance is larger than this server accepts."
        )
    if header.transfer_syntax_uid not in ALLOWED_TRANSFER_SYNTAXES:
        return StoreOutcome(
            **refs,
            failure=FailureReason.TRANSFER_SYNTAX_NOT_SUPPORTED,
            reason=f"Transfer syntax {header.transfer_syntax_uid or '(missing)'} is not supported.",
        )
    try:
        validated = validate_image_bytes(data)
    except UploadRejected as exc:
        return StoreOutcome(**refs, failure=FailureReason.CANNOT_UNDERSTAND, reason=exc.messages[0])

    try:
        return _store_validated(hospital, header, refs, validated, credential=credential, request=request)
    except IntegrityError:
        # The same SOP Instance UID arrived in a concurrent request and won: answer as a re-send.
        found = _existing(hospital, header, refs)
        if found is None:
            raise
        return found


def _existing(hospital: Hospital, header: _Header, refs: InstanceRefs) -> StoreOutcome | None:
    """The outcome for an instance stored before, or None if this SOP Instance UID is new here."""
    instance = (
        DicomInstance.objects.filter(hospital=hospital, sop_instance_uid=header.sop_instance_uid)
        .select_related("dicom_study")
        .first()
    )
    if instance is None:
        return None
    if instance.dicom_study.study_instance_uid != header.study_instance_uid:
        return StoreOutcome(
            **refs,
            failure=FailureReason.PROCESSING_FAILURE,
            reason="This SOP Instance UID is already stored in another study.",
        )
    return StoreOutcome(**refs, duplicate=True, held=instance.study_id is None)


def _store_validated(
    hospital: Hospital,
    header: _Header,
    refs: InstanceRefs,
    validated: Any,
    *,
    credential: IntegrationCredential,
    request: HttpRequest | None,
) -> StoreOutcome:
    held_blob = None
    stored_study = None
    try:
        with transaction.atomic():
            dicom_study, created = DicomStudy.objects.select_for_update().get_or_create(
                hospital=hospital,
                study_instance_uid=header.study_instance_uid,
                defaults=_study_defaults(hospital, header),
            )
            if created:
                _audit_arrival(dicom_study, credential, request)
            elif dicom_study.sent_patient_id != header.patient_id:
                # Instances of one study must name one patient; a mix is never filed anywhere.
                return StoreOutcome(
                    **refs,
                    failure=FailureReason.PROCESSING_FAILURE,
                    reason="The Patient ID differs from the one of this study's other instances.",
                )
            instance = DicomInstance(
                hospital=hospital,
                dicom_study=dicom_study,
                series_instance_uid=header.series_instance_uid,
                sop_instance_uid=header.sop_instance_uid,
                sop_class_uid=header.sop_class_uid,
                modality=header.modality,
                instance_number=header.instance_number,
                series_number=header.series_number,
                rows=header.rows,
                columns=header.columns,
                transfer_syntax_uid=header.transfer_syntax_uid,
                credential=credential,
            )
            if dicom_study.patient is not None:
                stored_study = study_services.submit_study(
                    dicom_study.patient,
                    validated,
                    original_filename=f"{header.sop_instance_uid}.dcm",
                    actor=None,
                    request=request,
                )
                instance.study = stored_study
            else:
                held_blob = store_encrypted(validated.data, folder=f"integration/h{hospital.pk}", suffix=".dcm")
                instance.held_file_name = held_blob.name
                instance.held_file_sha256 = held_blob.sha256
                instance.held_file_key_id = held_blob.key_id
            with transaction.atomic():  # a savepoint: a concurrent duplicate raises here, not later
                instance.save()
            if held_blob is not None:
                audit.record(
                    "integration.instance_held",
                    hospital=hospital,
                    obj=instance,
                    request=request,
                    credential=credential.key_id,
                    dicom_study=dicom_study.pk,
                )
    except BaseException:
        # Nothing of a failed instance stays behind: neither the held file nor the study's file.
        if held_blob is not None:
            delete_stored(held_blob.name)
        if stored_study is not None:
            delete_stored(stored_study.file_name)
        raise
    return StoreOutcome(**refs, held=held_blob is not None)


def _study_defaults(hospital: Hospital, header: _Header) -> dict[str, Any]:
    patient = None
    if header.patient_id:
        patient = Patient.objects.filter(hospital=hospital, mrn=header.patient_id).first()
    return {
        "patient": patient,
        "sent_patient_id": header.patient_id,
        "sent_patient_name": header.patient_name,
        "sent_birth_date": header.birth_date,
        "sent_sex": header.sex,
        "accession_number": header.accession_number,
        "study_date": header.study_date,
        "study_time": header.study_time,
        "description": header.description,
        "matched_at": timezone.now() if patient is not None else None,
    }


def _audit_arrival(dicom_study: DicomStudy, credential: IntegrationCredential, request: HttpRequest | None) -> None:
    audit.record(
        "integration.study_matched" if dicom_study.is_matched else "integration.study_unmatched",
        hospital=dicom_study.hospital,
        obj=dicom_study,
        request=request,
        credential=credential.key_id,
        patient_id_sent=dicom_study.sent_patient_id,
        patient=dicom_study.patient_id,
    )


# --- resolving the unmatched queue (hospital admin) --------------------------------------------------


def link_unmatched_study(
    dicom_study: DicomStudy, patient: Patient, *, actor: Any, request: HttpRequest | None = None
) -> DicomStudy:
    """File an unmatched study under ``patient`` (of the same hospital): each held instance
    becomes a portal study, is read by the AI, and reaches the patient's care team."""
    if patient.hospital_id != dicom_study.hospital_id:
        raise ValidationError("The patient belongs to another hospital.")
    moved: list[str] = []
    created_files: list[str] = []
    try:
        with transaction.atomic():
            locked = DicomStudy.objects.select_for_update().get(pk=dicom_study.pk, hospital_id=dicom_study.hospital_id)
            if locked.patient_id is not None:
                raise ValidationError("This study has already been filed under a patient.")
            locked.patient = patient
            locked.matched_at = timezone.now()
            locked.matched_by = actor
            locked.save(update_fields=["patient", "matched_at", "matched_by"])
            for instance in locked.instances.filter(study__isnull=True).order_by("pk"):
                data = read_encrypted(instance.held_file_name, instance.held_file_sha256)
                try:
                    validated = validate_image_bytes(data)
                except UploadRejected as exc:
                    raise ValidationError(
                        f"Instance {instance.sop_instance_uid} can no longer be accepted: {exc.messages[0]}"
                    ) from None
                study = study_services.submit_study(
                    patient,
                    validated,
                    original_filename=f"{instance.sop_instance_uid}.dcm",
                    actor=actor,
                    request=request,
                )
                created_files.append(study.file_name)
                moved.append(instance.held_file_name)
                instance.study = study
                instance.held_file_name = instance.held_file_sha256 = instance.held_file_key_id = ""
                instance.save(update_fields=["study", "held_file_name", "held_file_sha256", "held_file_key_id"])
            audit.record(
                "integration.study_linked",
                hospital=locked.hospital,
                actor=actor,
                obj=locked,
                request=request,
                patient=patient.pk,
                patient_id_sent=locked.sent_patient_id,
                instances=len(moved),
            )
            # The held copies go once the studies that replace them are committed.
            transaction.on_commit(lambda: _delete_all(moved), robust=True)
    except BaseException:
        for name in created_files:
            delete_stored(name)
        raise
    dicom_study.refresh_from_db()
    return dicom_study


def discard_unmatched_study(
    dicom_study: DicomStudy, *, reason: str, actor: Any, request: HttpRequest | None = None
) -> None:
    """Delete an unmatched study that does not belong to this hospital (sent here by mistake):
    its held files go on commit; the audit trail keeps what was sent and why it was discarded."""
    reason = (reason or "").strip()[:300]
    if not reason:
        raise ValidationError("Please say why the study is discarded (for the audit trail).")
    if "\x00" in reason:
        raise ValidationError("The reason contains a NUL character; please type it again.")
    with transaction.atomic():
        locked = DicomStudy.objects.select_for_update().get(pk=dicom_study.pk, hospital_id=dicom_study.hospital_id)
        if locked.patient_id is not None:
            raise ValidationError("This study has already been filed under a patient.")
        held = list(locked.instances.values_list("held_file_name", flat=True))
        audit.record(
            "integration.study_discarded",
            hospital=locked.hospital,
            actor=actor,
            obj=locked,
            request=request,
            study_instance_uid=locked.study_instance_uid,
            patient_id_sent=locked.sent_patient_id,
            instances=len(held),
            reason=reason,
        )
        locked.delete()  # its instances go with it
        transaction.on_commit(lambda: _delete_all(name for name in held if name), robust=True)


def create_patient_for_unmatched_study(
    dicom_study: DicomStudy, *, actor: Any, request: HttpRequest | None = None, **patient_fields: Any
) -> Patient:
    """Create the patient an unmatched study belongs to, then file the study under them."""
    with transaction.atomic():
        patient = study_services.create_patient(dicom_study.hospital, actor=actor, request=request, **patient_fields)
        link_unmatched_study(dicom_study, patient, actor=actor, request=request)
    return patient


# --- FHIR out ------------------------------------------------------------------------------------


class FhirEndpointError(Exception):
    """The hospital's FHIR server did not take the report (network error or a non-2xx answer)."""


def fhir_endpoint(hospital: Hospital) -> dict[str, str] | None:
    """The FHIR server configured for ``hospital`` (``FHIR_ENDPOINTS``), or None."""
    endpoint = settings.FHIR_ENDPOINTS.get(hospital.slug)
    return endpoint if endpoint and endpoint.get("url") else None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A FHIR server's redirect is an answer, not a place to go: urllib would turn the POST into a
    GET (a 200 that stored nothing) and carry the Authorization header to wherever it points."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def send_report_fhir(report: Any, endpoint: dict[str, str], *, attempt: int) -> int:
    """POST the signed report as a FHIR transaction Bundle to ``endpoint``; returns the HTTP status.

    Raises ``FhirEndpointError`` when the server is unreachable or answers other than 2xx (the
    caller retries); every outcome is audited, without the endpoint's credentials.
    """
    from .fhir import FHIR_MEDIA_TYPE, report_bundle

    url = endpoint["url"].rstrip("/")
    if urlsplit(url).scheme not in ("http", "https"):
        raise ImproperlyConfigured(f"FHIR_ENDPOINTS: {report.hospital.slug} needs an http(s) URL.")
    body = json.dumps(report_bundle(report, transaction=True)).encode()
    headers = {"Content-Type": FHIR_MEDIA_TYPE, "Accept": FHIR_MEDIA_TYPE}
    if endpoint.get("authorization"):
        headers["Authorization"] = endpoint["authorization"]
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - scheme checked
    host = urlsplit(url).netloc
    try:
        opener = urllib.request.build_opener(_NoRedirects)
        with opener.open(request, timeout=settings.FHIR_EXPORT_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        audit.record(
            "report.fhir_export_error",
            hospital=report.hospital,
            obj=report,
            endpoint=host,
            attempt=attempt,
            error=str(exc)[:200],
        )
        raise FhirEndpointError(f"{host} is unreachable: {exc}") from exc
    if not 200 <= status < 300:
        audit.record(
            "report.fhir_export_error",
            hospital=report.hospital,
            obj=report,
            endpoint=host,
            attempt=attempt,
            status=status,
        )
        raise FhirEndpointError(f"{host} answered {status}")
    audit.record(
        "report.fhir_export",
        hospital=report.hospital,
        obj=report,
        endpoint=host,
        attempt=attempt,
        status=status,
        version=report.version,
    )
    return status


def _delete_all(names: Iterable[str]) -> None:
    for name in names:
        delete_stored(name)
