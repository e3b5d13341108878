"""REST API v1, mounted under /api/v1/h/<hospital_slug>/ (namespace "api").

Every route here must also be listed in tests/routes/api.py (the tenancy matrix)."""

from django.urls import path

from . import api

app_name = "api"
urlpatterns = [
    path("patients/", api.PatientListCreate.as_view(), name="patient-list"),
    path("patients/<int:pk>/", api.PatientDetail.as_view(), name="patient-detail"),
    path("patients/<int:pk>/studies/", api.PatientStudyList.as_view(), name="patient-studies"),
    path("studies/", api.StudyListCreate.as_view(), name="study-list"),
    path("studies/<int:pk>/", api.StudyDetail.as_view(), name="study-detail"),
    path("studies/<int:pk>/image/", api.StudyImage.as_view(), name="study-image"),
]
