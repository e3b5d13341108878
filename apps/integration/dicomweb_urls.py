"""DICOMweb routes of one hospital, mounted under /dicomweb/h/<hospital_slug>/ (namespace
"dicomweb"). No trailing slashes: DICOMweb clients build these paths themselves (PS3.18).

Every route here is also in tests/routes/integration.py (the tenancy matrix)."""

from django.urls import path, register_converter

from . import dicomweb_views as views


class UIDConverter:
    """A DICOM UID: digits and dots, at most 64 characters."""

    regex = r"[0-9]+(?:\.[0-9]+)*"

    def to_python(self, value: str) -> str:
        if len(value) > 64:
            raise ValueError("a DICOM UID has at most 64 characters")
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(UIDConverter, "uid")

app_name = "dicomweb"
urlpatterns = [
    path("studies", views.studies, name="studies"),
    path("instances", views.instances, name="instances"),
    path("studies/<uid:study>", views.study, name="study"),
    path("studies/<uid:study>/instances", views.instances, name="study_instances"),
    path("studies/<uid:study>/series/<uid:series>/instances/<uid:instance>", views.instance, name="instance"),
    path(
        "studies/<uid:study>/series/<uid:series>/instances/<uid:instance>/rendered",
        views.rendered,
        name="instance_rendered",
    ),
]
