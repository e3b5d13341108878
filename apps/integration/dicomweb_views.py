"""DICOMweb endpoints of one hospital, under ``/dicomweb/h/<hospital_slug>/`` (DICOM PS3.18).

* STOW-RS ``POST studies``: a PACS stores instances with the hospital's integration credential.
* QIDO-RS ``GET studies``, ``GET studies/{study}/instances``, ``GET instances``: search.
* WADO-RS ``GET studies/{study}``, ``GET studies/{study}/series/{series}/instances/{instance}``
  and ``…/rendered``: retrieve.

Who may do what is decided once, in ``dicomweb_endpoint``: no credential and no session → 401;
a wrong or revoked credential → 401; another hospital's credential → 403; a signed-in person who
is not a member → 404; a member who is not a doctor or hospital admin → 403; storing with a
session instead of a credential → 403. Every request is audited.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.db.models import Count, Max, Min, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.http import parse_header_parameters
from django.views.decorators.csrf import csrf_exempt
from django_scopes import scopes_disabled
from PIL import Image

from apps.accounts import audit
from apps.accounts.models import Hospital
from apps.accounts.tenancy import resolve_tenant, tenant_scope
from apps.studies.rendering import dicom_display_png
from apps.studies.storage import TamperedFileError, read_encrypted

from . import credentials
from .access import Caller, visible_instances
from .dicomweb import (
    DICOM_JSON_MEDIA_TYPE,
    BadRequestBody,
    UnsupportedMediaType,
    dicom_json,
    multipart_related,
    parse_stow_body,
)
from .models import DicomInstance
from .services import FailureReason, StoreOutcome, store_instance

log = logging.getLogger(__name__)

REALM = 'Bearer realm="ImageMedix DICOMweb", Basic realm="ImageMedix DICOMweb"'
QIDO_DEFAULT_LIMIT = 100
QIDO_MAX_LIMIT = 1000
#: Far beyond any hospital's instance count, and well inside PostgreSQL's OFFSET (a bigint).
QIDO_MAX_OFFSET = 10**9


class Denied(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = REALM
    return response


def _audit_hospital(slug: str) -> Hospital | None:
    with scopes_disabled():
        return Hospital.objects.filter(slug=slug, is_active=True).first()


def resolve_caller(request: HttpRequest, hospital_slug: str) -> Caller:
    """Authenticate and authorize a DICOMweb request (see the module docstring); raises ``Denied``."""
    storing = request.method == "POST"
    header = request.headers.get("Authorization", "")
    if header:
        credential = credentials.authenticate(header)
        if credential is None:
            audit.record(
                "integration.auth_failed",
                hospital=_audit_hospital(hospital_slug),
                request=request,
                path=request.path[:200],
            )
            raise Denied(401, "The integration credential is not valid (unknown, revoked or mistyped).")
        if credential.hospital.slug != hospital_slug:
            audit.record(
                "integration.wrong_hospital",
                hospital=credential.hospital,
                obj=credential,
                request=request,
                credential=credential.key_id,
                path=request.path[:200],
            )
            raise Denied(403, "This integration credential belongs to another hospital.")
        credentials.note_use(credential)
        return Caller(hospital=credential.hospital, credential=credential)
    if not request.user.is_authenticated:
        raise Denied(401, "Authenticate with the hospital's integration credential.")
    try:
        tenant = resolve_tenant(request.user, hospital_slug)
    except Http404:
        raise Denied(404, "Not found.") from None
    if not tenant.is_clinical:
        raise Denied(403, "Your role in this hospital does not allow DICOMweb access.")
    if storing:
        raise Denied(403, "Studies are stored over DICOMweb with the hospital's integration credential only.")
    return Caller(hospital=tenant.hospital, tenant=tenant)


def dicomweb_endpoint(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Resolve the caller, then run the view in the hospital's scope with ``caller`` as argument.
    Answers in JSON, never with a login redirect; 404 inside the view is a JSON 404 too."""

    @csrf_exempt  # no cookie-authenticated writes: storing takes a credential header only
    @wraps(view)
    def wrapped(request: HttpRequest, hospital_slug: str, **kwargs: Any) -> HttpResponse:
        try:
            caller = resolve_caller(request, hospital_slug)
        except Denied as exc:
            return error(exc.status, exc.message)
        with tenant_scope(caller.hospital):
            try:
                return view(request, caller, **kwargs)
            except Http404:
                return error(404, "Not found.")

    return wrapped


# --- STOW-RS and QIDO-RS on /studies ------------------------------------------------------------


@dicomweb_endpoint
def studies(request: HttpRequest, caller: Caller) -> HttpResponse:
    if request.method == "POST":
        return _store(request, caller)
    if request.method in READ_METHODS:
        return _search_studies(request, caller)
    response = error(405, "Use GET (search) or POST (store).")
    response["Allow"] = "GET, HEAD, POST"
    return response


def _store(request: HttpRequest, caller: Caller) -> HttpResponse:
    limit = settings.DICOMWEB_MAX_REQUEST_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if not _is_number(declared):
        return error(400, "The Content-Length is not a number.")
    if int(declared) > limit:
        return error(413, f"The request is larger than the {limit // (1024 * 1024)} MB this server accepts.")
    body = request.read(limit + 1)
    if not body and "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        # A chunked body the server in front of Django did not pass on (plain WSGI servers drop it).
        return error(411, 'Send the request with a Content-Length (in Orthanc: "ChunkedTransfers": false).')
    if len(body) > limit:
        return error(413, f"The request is larger than the {limit // (1024 * 1024)} MB this server accepts.")
    try:
        parts = parse_stow_body(request.META.get("CONTENT_TYPE", ""), body)
    except UnsupportedMediaType as exc:
        return error(415, str(exc))
    except BadRequestBody as exc:
        return error(400, str(exc))

    assert caller.credential is not None  # resolve_caller lets only credentials store
    outcomes = []
    for part in parts:
        if part.content_type != "application/dicom":
            outcomes.append(
                StoreOutcome(
                    failure=FailureReason.CANNOT_UNDERSTAND, reason=f"A part of type {part.content_type} is not DICOM."
                )
            )
            continue
        outcomes.append(store_instance(caller.hospital, part.data, credential=caller.credential, request=request))

    stored = [o for o in outcomes if o.stored]
    failed = [o for o in outcomes if not o.stored]
    audit.record(
        "integration.stow",
        hospital=caller.hospital,
        obj=caller.credential,
        request=request,
        credential=caller.credential.key_id,
        instances=len(outcomes),
        stored=len(stored),
        held=sum(1 for o in stored if o.held),
        already_stored=sum(1 for o in stored if o.duplicate),
        failed=[{"sop_instance_uid": o.sop_instance_uid, "reason": o.reason} for o in failed][:50],
    )
    for outcome in failed:
        log.info("STOW-RS refused %s: %s", outcome.sop_instance_uid or "a part", outcome.reason)

    status = 200 if not failed else 202 if stored else 409
    study_uids = {o.study_instance_uid for o in stored}
    body_json = dicom_json(
        {
            "RetrieveURL": _study_url(request, caller, study_uids.pop()) if len(study_uids) == 1 else None,
            "FailedSOPSequence": [
                {
                    "ReferencedSOPClassUID": o.sop_class_uid,
                    "ReferencedSOPInstanceUID": o.sop_instance_uid,
                    "FailureReason": o.failure,
                }
                for o in failed
            ],
            "ReferencedSOPSequence": [
                {
                    "ReferencedSOPClassUID": o.sop_class_uid,
                    "ReferencedSOPInstanceUID": o.sop_instance_uid,
                    "RetrieveURL": _instance_url(request, caller, o),
                }
                for o in stored
            ],
        }
    )
    response = JsonResponse(body_json, status=status, content_type=DICOM_JSON_MEDIA_TYPE)
    if failed:
        # PS3.18: a 299 Warning per problem, so the sender's log says why in words. A reason may
        # quote the instance (its transfer syntax): one line, no quote that ends the text early.
        response["Warning"] = ", ".join(
            '299 ImageMedix "{}"'.format(" ".join(o.reason.split()).replace('"', "'").replace("\\", "/"))
            for o in failed[:10]
        )
    return response


def _study_url(request: HttpRequest, caller: Caller, study_uid: str) -> str:
    return request.build_absolute_uri(
        reverse("dicomweb:study", kwargs={"hospital_slug": caller.hospital.slug, "study": study_uid})
    )


def _instance_url(request: HttpRequest, caller: Caller, outcome: StoreOutcome) -> str:
    return request.build_absolute_uri(
        reverse(
            "dicomweb:instance",
            kwargs={
                "hospital_slug": caller.hospital.slug,
                "study": outcome.study_instance_uid,
                "series": outcome.series_instance_uid,
                "instance": outcome.sop_instance_uid,
            },
        )
    )


# --- QIDO-RS ------------------------------------------------------------------------------------

#: QIDO-RS query keys: a keyword, or its tag as 8 hex digits, and the model field it filters.
STUDY_KEYS = {
    "StudyInstanceUID": ("0020000D", "dicom_study__study_instance_uid"),
    "PatientID": ("00100020", "study__patient__mrn"),
    "AccessionNumber": ("00080050", "dicom_study__accession_number"),
    "StudyDate": ("00080020", "dicom_study__study_date"),
    "ModalitiesInStudy": ("00080061", "modality"),
}
INSTANCE_KEYS = {
    **{k: v for k, v in STUDY_KEYS.items() if k != "ModalitiesInStudy"},
    "SeriesInstanceUID": ("0020000E", "series_instance_uid"),
    "SOPInstanceUID": ("00080018", "sop_instance_uid"),
    "SOPClassUID": ("00080016", "sop_class_uid"),
    "Modality": ("00080060", "modality"),
}
#: Accepted and not filtering: the results always carry the attributes listed in the docs.
IGNORED_KEYS = {"includefield", "fuzzymatching"}


def _is_number(value: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes '²' and other digits ``int()`` refuses."""
    return value.isascii() and value.isdigit()


def _query(request: HttpRequest, instances: QuerySet[DicomInstance], keys: dict[str, tuple[str, str]]):
    """Apply the QIDO-RS query parameters; returns (queryset, limit, offset) or raises Denied(400)."""
    by_tag = {tag: keyword for keyword, (tag, _) in keys.items()}
    limit, offset = QIDO_DEFAULT_LIMIT, 0
    for name, values in request.GET.lists():
        value = values[-1].strip()
        if "\x00" in value:
            raise Denied(400, f"{name} contains a NUL character.")
        if name in ("limit", "offset"):
            if not _is_number(value):
                raise Denied(400, f"{name} must be a whole number.")
            if name == "limit":
                limit = min(int(value), QIDO_MAX_LIMIT)
            elif int(value) > QIDO_MAX_OFFSET:
                raise Denied(400, f"offset must be at most {QIDO_MAX_OFFSET}.")
            else:
                offset = int(value)
            continue
        if name in IGNORED_KEYS:
            continue
        keyword = by_tag.get(name.upper(), name)
        if keyword not in keys:
            raise Denied(400, f"Searching by {name} is not supported.")
        field = keys[keyword][1]
        if keyword == "StudyDate" and "-" in value:
            start, _, end = value.partition("-")
            if start:
                instances = instances.filter(**{f"{field}__gte": start})
            if end:
                instances = instances.filter(**{f"{field}__lte": end})
        elif "," in value or "\\" in value:
            instances = instances.filter(**{f"{field}__in": value.replace("\\", ",").split(",")})
        elif value:
            instances = instances.filter(**{field: value})
    return instances, limit, offset


READ_METHODS = ("GET", "HEAD")


def _only_get() -> JsonResponse:
    response = error(405, "Use GET.")
    response["Allow"] = "GET, HEAD"
    return response


def _qido_response(results: list[dict[str, Any]]) -> JsonResponse:
    return JsonResponse(results, safe=False, content_type=DICOM_JSON_MEDIA_TYPE)


def _search_studies(request: HttpRequest, caller: Caller) -> HttpResponse:
    try:
        instances, limit, offset = _query(request, visible_instances(caller), STUDY_KEYS)
    except Denied as exc:
        return error(exc.status, exc.message)
    rows = (
        instances.values("dicom_study_id")
        .annotate(
            n_instances=Count("pk"),
            n_series=Count("series_instance_uid", distinct=True),
            first=Min("pk"),
            last=Max("received_at"),
        )
        .order_by("-last", "dicom_study_id")[offset : offset + limit]
    )
    rows = list(rows)
    firsts = {
        i.dicom_study_id: i
        for i in DicomInstance.objects.filter(pk__in=[r["first"] for r in rows]).select_related(
            "dicom_study", "study__patient"
        )
    }
    modalities: dict[int, set[str]] = {}
    for study_id, modality in instances.filter(dicom_study_id__in=list(firsts)).values_list(
        "dicom_study_id", "modality"
    ):
        if modality:
            modalities.setdefault(study_id, set()).add(modality)
    results = []
    for row in rows:
        first = firsts[row["dicom_study_id"]]
        assert first.study is not None  # visible_instances: only instances filed as a study
        dicom_study, patient = first.dicom_study, first.study.patient
        results.append(
            dicom_json(
                {
                    "StudyInstanceUID": dicom_study.study_instance_uid,
                    "StudyDate": dicom_study.study_date,
                    "StudyTime": dicom_study.study_time,
                    "AccessionNumber": dicom_study.accession_number,
                    "StudyDescription": dicom_study.description,
                    "ModalitiesInStudy": sorted(modalities.get(dicom_study.pk, ())),
                    "PatientName": f"{patient.family_name}^{patient.given_name}",
                    "PatientID": patient.mrn,
                    "PatientBirthDate": patient.birth_date.strftime("%Y%m%d"),
                    "PatientSex": patient.sex,
                    "NumberOfStudyRelatedSeries": row["n_series"],
                    "NumberOfStudyRelatedInstances": row["n_instances"],
                    "RetrieveURL": _study_url(request, caller, dicom_study.study_instance_uid),
                }
            )
        )
    audit.record(
        "dicomweb.search",
        hospital=caller.hospital,
        actor=caller.actor,
        request=request,
        level="studies",
        results=len(results),
        query=request.GET.urlencode()[:300],
        **caller.audit_detail,
    )
    return _qido_response(results)


@dicomweb_endpoint
def instances(request: HttpRequest, caller: Caller, study: str | None = None) -> HttpResponse:
    if request.method not in READ_METHODS:
        return _only_get()
    found = visible_instances(caller)
    if study is not None:
        found = found.filter(dicom_study__study_instance_uid=study)
        if not found.exists():  # a study path names a resource: one the caller may not see does not exist
            return error(404, "Not found.")
    try:
        found, limit, offset = _query(request, found, INSTANCE_KEYS)
    except Denied as exc:
        return error(exc.status, exc.message)
    page = list(found.select_related("dicom_study", "study__patient").order_by("pk")[offset : offset + limit])
    results = [
        dicom_json(
            {
                "SOPClassUID": i.sop_class_uid,
                "SOPInstanceUID": i.sop_instance_uid,
                "StudyInstanceUID": i.dicom_study.study_instance_uid,
                "SeriesInstanceUID": i.series_instance_uid,
                "Modality": i.modality,
                "InstanceNumber": i.instance_number,
                "SeriesNumber": i.series_number,
                "Rows": i.rows,
                "Columns": i.columns,
                "PatientID": i.study.patient.mrn,
                "RetrieveURL": _instance_url(
                    request,
                    caller,
                    StoreOutcome(
                        study_instance_uid=i.dicom_study.study_instance_uid,
                        series_instance_uid=i.series_instance_uid,
                        sop_instance_uid=i.sop_instance_uid,
                    ),
                ),
            }
        )
        for i in page
    ]
    audit.record(
        "dicomweb.search",
        hospital=caller.hospital,
        actor=caller.actor,
        request=request,
        level="instances",
        study=study or "",
        results=len(results),
        query=request.GET.urlencode()[:300],
        **caller.audit_detail,
    )
    return _qido_response(results)


# --- WADO-RS ------------------------------------------------------------------------------------


def _accepts_dicom(request: HttpRequest) -> bool:
    """The Accept header allows ``multipart/related; type="application/dicom"`` (any transfer syntax)."""
    accept = request.headers.get("Accept", "").strip()
    if not accept:
        return True
    for item in accept.split(","):
        media, params = parse_header_parameters(item)
        if media in ("*/*", "multipart/*"):
            return True
        if media == "multipart/related" and params.get("type", "application/dicom").lower() == "application/dicom":
            return True
    return False


def _read(instance: DicomInstance) -> bytes:
    study = instance.study
    assert study is not None  # visible_instances: only instances filed as a study
    return read_encrypted(study.file_name, study.file_sha256)


def _integrity_error(request: HttpRequest, caller: Caller, instance: DicomInstance, exc: Exception) -> JsonResponse:
    """409 for an instance whose stored file is missing or not the one stored, audited like every
    encrypted download's (``apps.studies.downloads``); nothing of the file is sent."""
    log.error("Stored instance %s (study %s) cannot be served: %s", instance.sop_instance_uid, instance.study_id, exc)
    audit.record(
        "dicomweb.integrity_error",
        hospital=caller.hospital,
        actor=caller.actor,
        obj=instance.study,
        request=request,
        sop_instance_uid=instance.sop_instance_uid,
        error=str(exc)[:200],
        **caller.audit_detail,
    )
    response = error(409, "A stored instance failed its integrity check and is not sent.")
    response["Cache-Control"] = "private, no-store"
    return response


def _retrieve(
    request: HttpRequest,
    caller: Caller,
    found: list[DicomInstance],
    *,
    action: str,
    render: Callable[[list[bytes]], tuple[bytes, str]],
) -> HttpResponse:
    """The one retrieval path of WADO-RS: read and verify the stored file of every instance in
    ``found`` (which the caller may see; a missing or tampered one: 409, audited, nothing sent),
    turn the files into ``(body, content type)`` with ``render``, audit ``action`` for each
    instance, and answer privately (``Cache-Control: private, no-store``)."""
    blobs = []
    for instance in found:
        try:
            blobs.append(_read(instance))
        except (TamperedFileError, OSError) as exc:
            return _integrity_error(request, caller, instance, exc)
    body, content_type = render(blobs)
    for instance in found:
        audit.record(
            action,
            hospital=caller.hospital,
            actor=caller.actor,
            obj=instance.study,
            request=request,
            sop_instance_uid=instance.sop_instance_uid,
            **caller.audit_detail,
        )
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "private, no-store"
    return response


def _retrieve_dicom(request: HttpRequest, caller: Caller, found: list[DicomInstance]) -> HttpResponse:
    """The instances themselves, as ``multipart/related; type="application/dicom"``."""
    if not found:
        return error(404, "Not found.")
    if not _accepts_dicom(request):
        return error(406, 'Instances are sent as multipart/related; type="application/dicom".')
    return _retrieve(request, caller, found, action="dicomweb.retrieve", render=multipart_related)


@dicomweb_endpoint
def study(request: HttpRequest, caller: Caller, study: str) -> HttpResponse:
    if request.method not in READ_METHODS:
        return _only_get()
    found = list(
        visible_instances(caller)
        .filter(dicom_study__study_instance_uid=study)
        .select_related("study")
        .order_by("series_number", "instance_number", "pk")
    )
    return _retrieve_dicom(request, caller, found)


def _instance(caller: Caller, study: str, series: str, instance: str) -> DicomInstance:
    found = (
        visible_instances(caller)
        .filter(dicom_study__study_instance_uid=study, series_instance_uid=series, sop_instance_uid=instance)
        .select_related("study")
        .first()
    )
    if found is None:
        raise Http404("No such instance.")
    return found


@dicomweb_endpoint
def instance(request: HttpRequest, caller: Caller, study: str, series: str, instance: str) -> HttpResponse:
    if request.method not in READ_METHODS:
        return _only_get()
    return _retrieve_dicom(request, caller, [_instance(caller, study, series, instance)])


def _rendered_as(media_type: str) -> Callable[[list[bytes]], tuple[bytes, str]]:
    """Render the one instance's pixels for display, as PNG or JPEG."""

    def render(blobs: list[bytes]) -> tuple[bytes, str]:
        (data,) = blobs
        png = dicom_display_png(data)
        if media_type == "image/png":
            return png, media_type
        out = io.BytesIO()
        Image.open(io.BytesIO(png)).save(out, format="JPEG", quality=90)
        return out.getvalue(), media_type

    return render


@dicomweb_endpoint
def rendered(request: HttpRequest, caller: Caller, study: str, series: str, instance: str) -> HttpResponse:
    if request.method not in READ_METHODS:
        return _only_get()
    found = _instance(caller, study, series, instance)
    media_type = request.get_preferred_type(["image/png", "image/jpeg"])
    if media_type is None:
        return error(406, "Rendered instances are sent as image/png or image/jpeg.")
    return _retrieve(request, caller, [found], action="dicomweb.retrieve_rendered", render=_rendered_as(media_type))
