"""Caseload, patient, upload and study pages, mounted under /h/<hospital_slug>/."""

from django.urls import path

from . import views

app_name = "studies"
urlpatterns = [
    path("", views.caseload, name="caseload"),
    path("patients/new/", views.patient_create, name="patient_create"),
    path("patients/<int:pk>/", views.patient_detail, name="patient_detail"),
    path("upload/", views.upload, name="upload"),
    path("patients/search.json", views.patient_search, name="patient_search"),
    path("studies/<int:pk>/", views.study_detail, name="study_detail"),
    path("studies/<int:pk>/entered-in-error/", views.entered_in_error, name="entered_in_error"),
    path("studies/<int:pk>/image/", views.study_image, name="study_image"),
    path("studies/<int:pk>/image/values.png", views.study_image, {"rendition": "values"}, name="study_image_values"),
    path("audit/", views.audit_log, name="audit_log"),
    path("audit/export.csv", views.audit_export, name="audit_export"),
    path("admin-tools/members/", views.members, name="members"),
    path("admin-tools/members/<int:pk>/deactivate/", views.member_deactivate, name="member_deactivate"),
    path("admin-tools/members/<int:pk>/unlock/", views.member_unlock, name="member_unlock"),
    path("admin-tools/invitations/<int:pk>/withdraw/", views.invitation_revoke, name="invitation_revoke"),
    path("admin-tools/second-factor/", views.second_factor_policy, name="second_factor_policy"),
    path("admin-tools/assignments/", views.assignments, name="assignments"),
    path("admin-tools/assignments/<int:pk>/remove/", views.assignment_remove, name="assignment_remove"),
]
