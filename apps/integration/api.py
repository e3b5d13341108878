"""REST API of the integration, under /api/v1/h/<hospital_slug>/: a signed report as FHIR R4."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts import audit
from apps.accounts.api import TenantAPIMixin
from apps.reports.access import get_report

from .fhir import FHIR_MEDIA_TYPE, NotExportable, report_bundle


class ReportFhir(TenantAPIMixin, APIView):
    """The signed report as a FHIR R4 Bundle: DiagnosticReport, ImagingStudy, the AI read's
    Observation and its Device. Whoever may read the report may read this (staff: their
    caseload's; a patient: their own signed reports); others get 404, a draft 409."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses={
            (200, FHIR_MEDIA_TYPE): OpenApiResponse(OpenApiTypes.OBJECT, description="FHIR R4 Bundle (collection)"),
            404: OpenApiResponse(description="No such report here, or you may not read it (the same answer)."),
            409: OpenApiResponse(description="The report is a draft"),
        }
    )
    def get(self, request: Request, hospital_slug: str, pk: int) -> Response:
        report = get_report(self.tenant, pk)
        try:
            bundle = report_bundle(report)
        except NotExportable as exc:
            return Response({"error": str(exc)}, status=409)
        audit.record(
            "report.fhir_view",
            hospital=self.tenant.hospital,
            actor=request.user,
            obj=report,
            request=request,
            via="api",
        )
        return Response(bundle, content_type=FHIR_MEDIA_TYPE, headers={"Cache-Control": "private, no-store"})
