"""The hospital admin's integration pages, mounted under /h/<hospital_slug>/."""

from django.urls import path

from . import views

app_name = "integration"
urlpatterns = [
    path("admin-tools/integration/", views.credentials, name="credentials"),
    path("admin-tools/integration/<int:pk>/revoke/", views.credential_revoke, name="credential_revoke"),
    path("admin-tools/integration/unmatched/", views.unmatched, name="unmatched"),
    path("admin-tools/integration/unmatched/<int:pk>/", views.unmatched_detail, name="unmatched_detail"),
]
