"""REST API of the integration, mounted under /api/v1/h/<hospital_slug>/ (namespace
"integration_api"). Every route here is also in tests/routes/integration.py."""

from django.urls import path

from . import api

app_name = "integration_api"
urlpatterns = [
    path("reports/<int:pk>/fhir", api.ReportFhir.as_view(), name="report-fhir"),
]
