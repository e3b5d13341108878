"""REST API v1 for patients and studies, mounted under ``/api/v1/h/<hospital_slug>/``.

Same rules as the pages: the hospital comes from the URL and is resolved after authentication
by ``TenantAPIMixin`` (non-members get 404), every endpoint is for clinicians (doctors and
hospital admins; a patient user gets 403), and objects come from ``visible_to`` and
``apps.studies.access`` only,
so what the user may not see answers 404 like what does not exist. Reads of patient data and
downloads write audit events; uploads go through ``validation`` and ``services.submit_study``.

Authentication: the browser session, or an API token in ``Authorization: Token <token>``
(``apps.accounts.tokens``: hashed, expiring, optionally bound to one hospital); create one on the
API tokens page or with ``manage.py create_api_token <email>``.
"""

from __future__ import annotations

from typing import Any, cast

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import HttpResponse, QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import Throttled, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts import audit, ratelimit
from apps.accounts.api import TenantAPIMixin
from apps.diagnosis.services import diagnoses_prefetch

from . import access, services
from .downloads import serve_encrypted
from .models import Patient, Study, StudyStatus
from .params import MAX_ID_DIGITS, parse_id
from .serializers import (
    ErrorSerializer,
    PatientCreateSerializer,
    PatientSerializer,
    StudySerializer,
    StudyUploadSerializer,
)
from .validation import UploadRejected, validate_upload

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "dicom": "application/dicom"}

NOT_FOUND = OpenApiResponse(description="No such object here, or you may not see it (the same answer).")
FORBIDDEN = OpenApiResponse(description="Your role in this hospital does not allow this.")
THROTTLED = OpenApiResponse(
    description="Too many writes (API_WRITE_RATE) or uploads (UPLOAD_RATE) in a short time; the Retry-After "
    "header says when to try again."
)
#: An id as ``params.parse_id`` accepts it: 1 to 18 digits.
ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 10**MAX_ID_DIGITS - 1}
SLUG = OpenApiParameter("hospital_slug", OpenApiTypes.STR, OpenApiParameter.PATH, description="The hospital.")


class IsClinician(BasePermission):
    """Doctors and hospital admins of the hospital in the URL."""

    message = "Only doctors and hospital administrators can use this part of the API."

    def has_permission(self, request: Request, view: Any) -> bool:
        tenant = view.tenant  # resolved by TenantAPIMixin.initial, before the permissions
        return bool(tenant is not None and tenant.is_clinical)


class ClinicalAPIView(TenantAPIMixin, generics.GenericAPIView):
    permission_classes = [IsAuthenticated, IsClinician]

    @property
    def fake(self) -> bool:
        """True while drf-spectacular builds the schema (no request, no tenant)."""
        return getattr(self, "swagger_fake_view", False)

    def record(self, action: str, obj: Any = None, **detail: Any) -> None:
        audit.record(
            action,
            hospital=self.tenant.hospital,
            actor=self.request.user,
            obj=obj,
            request=self.request,
            via="api",
            **detail,
        )


@extend_schema_view(
    get=extend_schema(
        summary="List patients",
        tags=["Patients"],
        description="Patients you may see: your caseload (all of the hospital's for its admins).",
        parameters=[SLUG, OpenApiParameter("q", OpenApiTypes.STR, description="Search by name or MRN.")],
        responses={200: PatientSerializer(many=True), 403: FORBIDDEN, 404: NOT_FOUND},
    ),
    post=extend_schema(
        summary="Create a patient",
        tags=["Patients"],
        description="Registers a patient in this hospital. A doctor who registers a patient takes them into "
        "their caseload.",
        parameters=[SLUG],
        request=PatientCreateSerializer,
        responses={
            201: PatientSerializer,
            400: OpenApiResponse(description="Invalid fields."),
            403: FORBIDDEN,
            429: THROTTLED,
        },
    ),
)
class PatientListCreate(ClinicalAPIView, generics.ListCreateAPIView):
    serializer_class = PatientSerializer

    def get_queryset(self) -> QuerySet[Patient]:
        if self.fake:
            return Patient.objects.none()
        qs = Patient.objects.visible_to(self.tenant)
        query = (self.request.query_params.get("q") or "").strip()
        if "\x00" in query:
            raise DjangoValidationError("The search “q” contains a NUL character.")
        if query:
            qs = qs.filter(Q(mrn__icontains=query) | Q(family_name__icontains=query) | Q(given_name__icontains=query))
        return qs.order_by("family_name", "given_name", "mrn")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        self.record("patient.list", count=response.data.get("count") if isinstance(response.data, dict) else None)
        return response

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        incoming = PatientCreateSerializer(data=request.data, context={"tenant": self.tenant})
        incoming.is_valid(raise_exception=True)
        try:
            with transaction.atomic():
                patient = services.create_patient(
                    self.tenant.hospital, actor=request.user, request=request, **incoming.validated_data
                )
                if self.tenant.is_doctor:
                    services.assign_doctor(patient, request.user, actor=request.user, request=request)
        except IntegrityError:  # the same MRN registered at the same moment by someone else
            raise ValidationError({"mrn": ["A patient with this MRN already exists in this hospital."]}) from None
        return Response(PatientSerializer(patient).data, status=status.HTTP_201_CREATED)


@extend_schema(
    summary="A patient",
    tags=["Patients"],
    parameters=[SLUG],
    responses={200: PatientSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
)
class PatientDetail(ClinicalAPIView, generics.RetrieveAPIView):
    serializer_class = PatientSerializer

    def get_object(self) -> Patient:
        patient = access.get_patient(self.tenant, self.kwargs["pk"])
        self.record("patient.view", patient)
        return patient


def _filter_studies(qs: QuerySet[Study], params: Any) -> QuerySet[Study]:
    """Only the studies of ``?status=``, if given; a status that does not exist is a 400, not an
    unfiltered list that looks like an answer."""
    wanted = params.get("status")
    if wanted is None:
        return qs
    if wanted not in StudyStatus.values:
        raise DjangoValidationError(f"The status filter must be one of: {', '.join(StudyStatus.values)}.")
    return qs.filter(status=wanted)


STATUS_PARAM = OpenApiParameter("status", OpenApiTypes.STR, enum=StudyStatus.values, description="Only this status.")


@extend_schema(
    summary="A patient's studies",
    tags=["Patients"],
    description="The studies of one patient, newest first.",
    parameters=[SLUG, STATUS_PARAM],
    responses={200: StudySerializer(many=True), 400: ErrorSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
)
class PatientStudyList(ClinicalAPIView, generics.ListAPIView):
    serializer_class = StudySerializer

    def get_queryset(self) -> QuerySet[Study]:
        if self.fake:
            return Study.objects.none()
        patient = access.get_patient(self.tenant, self.kwargs["pk"])
        self.patient = patient
        qs = (
            Study.objects.visible_to(self.tenant)
            .filter(patient=patient)
            .select_related("patient", "uploaded_by")
            .prefetch_related(diagnoses_prefetch())
        )
        return _filter_studies(qs, self.request.query_params)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        self.record("study.list", self.patient)
        return response


@extend_schema_view(
    get=extend_schema(
        summary="List studies",
        tags=["Studies"],
        description="Studies of the patients you may see, newest first.",
        parameters=[
            SLUG,
            STATUS_PARAM,
            OpenApiParameter("patient", ID_SCHEMA, description="Only this patient's studies."),
        ],
        responses={200: StudySerializer(many=True), 400: ErrorSerializer, 403: FORBIDDEN, 404: NOT_FOUND},
    ),
    post=extend_schema(
        summary="Upload a study",
        tags=["Studies"],
        description="Multipart upload of one PNG, JPEG or DICOM image for a patient of your caseload. The file "
        "is checked before anything is stored; a refused file answers 400 with the reason.",
        parameters=[SLUG],
        request={"multipart/form-data": StudyUploadSerializer},
        responses={201: StudySerializer, 400: ErrorSerializer, 403: FORBIDDEN, 429: THROTTLED},
    ),
)
class StudyListCreate(ClinicalAPIView, generics.ListCreateAPIView):
    serializer_class = StudySerializer
    parser_classes = [MultiPartParser, FormParser]

    def get_queryset(self) -> QuerySet[Study]:
        if self.fake:
            return Study.objects.none()
        qs = Study.objects.visible_to(self.tenant).select_related("patient", "uploaded_by")
        qs = qs.prefetch_related(diagnoses_prefetch())
        patient = self.request.query_params.get("patient")
        if patient:
            qs = qs.filter(patient_id=parse_id(patient, "patient filter"))
        return _filter_studies(qs, self.request.query_params)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        self.record("study.list")
        return response

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        wait = ratelimit.upload_wait(request.user)  # before the body is read
        if wait:
            raise Throttled(wait, detail="You have uploaded many images in a short time; uploads are paused.")
        data = cast(QueryDict, request.data)  # MultiPartParser and FormParser only
        raw_patient = str(data.get("patient", "") or "").strip()
        if not raw_patient:
            raise UploadRejected("Please say which patient the image belongs to (field 'patient').")
        patient = access.caseload(self.tenant).filter(pk=parse_id(raw_patient, "patient")).first()
        if patient is None:
            raise UploadRejected("Please choose a patient from your caseload.")
        uploaded = request.FILES.get("file")
        if uploaded is None:
            raise UploadRejected("Please attach the image file (field 'file').")
        validated = validate_upload(uploaded)
        study = services.submit_study(
            patient, validated, original_filename=uploaded.name or "upload", actor=request.user, request=request
        )
        return Response(StudySerializer(study).data, status=status.HTTP_201_CREATED)


@extend_schema(
    summary="A study",
    tags=["Studies"],
    parameters=[SLUG],
    responses={200: StudySerializer, 403: FORBIDDEN, 404: NOT_FOUND},
)
class StudyDetail(ClinicalAPIView, generics.RetrieveAPIView):
    serializer_class = StudySerializer

    def get_object(self) -> Study:
        study = access.get_study(self.tenant, self.kwargs["pk"])
        self.record("study.view", study)
        return study


@extend_schema(
    summary="Download a study's original image",
    tags=["Studies"],
    description="The uploaded file as it was received (decrypted and checked against its SHA-256).",
    parameters=[SLUG],
    responses={
        **{(200, content_type): OpenApiTypes.BINARY for content_type in CONTENT_TYPES.values()},
        403: FORBIDDEN,
        404: NOT_FOUND,
        409: ErrorSerializer,
    },
)
class StudyImage(ClinicalAPIView):
    serializer_class = None

    def get(self, request: Request, *args: Any, **kwargs: Any) -> HttpResponse:
        study = access.get_study(self.tenant, self.kwargs["pk"])
        suffix = {"png": "png", "jpeg": "jpg", "dicom": "dcm"}[study.source_format]
        return serve_encrypted(
            request,
            stored_name=study.file_name,
            stored_sha256=study.file_sha256,
            what="image",
            content_type=CONTENT_TYPES[study.source_format],
            filename=f"study-{study.pk}.{suffix}",
            inline=False,
            hospital=self.tenant.hospital,
            obj=study,
            action="study.download",
            json_errors=True,
            via="api",
        )
