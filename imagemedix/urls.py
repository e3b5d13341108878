"""URL map. Every hospital page lives under /h/<hospital_slug>/, every API route under
/api/v1/h/<hospital_slug>/ and every DICOMweb route under /dicomweb/h/<hospital_slug>/;
tests/test_tenancy_matrix.py walks this whole tree."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

tenant_pages = [
    path("", include("apps.studies.urls")),
    path("", include("apps.diagnosis.urls")),
    path("", include("apps.reports.urls")),
    path("", include("apps.chat.urls")),
    path("", include("apps.integration.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("apps.accounts.urls")),
    path("h/<slug:hospital_slug>/", include(tenant_pages)),
    path("api/v1/auth/", include("apps.accounts.api_urls")),
    path("api/v1/h/<slug:hospital_slug>/", include("apps.studies.api_urls")),
    path("api/v1/h/<slug:hospital_slug>/", include("apps.integration.api_urls")),
    path("dicomweb/h/<slug:hospital_slug>/", include("apps.integration.dicomweb_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves its script from a URL of its own: no inline script (CSP).
    path(
        "api/docs/",
        SpectacularSwaggerSplitView.as_view(url_name="api-schema", template_name="api/swagger_ui.html"),
        name="api-docs",
    ),
]
