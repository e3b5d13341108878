"""Pages of the reports app, mounted under /h/<hospital_slug>/."""

from django.urls import path

from . import views

app_name = "reports"
urlpatterns = [
    # Doctor: review an AI read, write and sign the report.
    path("studies/<int:study_pk>/review/", views.review, name="review"),
    path("studies/<int:study_pk>/review/feedback/", views.feedback, name="feedback"),
    # Staff: every version of a report, amendments, PDFs.
    path("reports/<int:pk>/", views.detail, name="detail"),
    path("reports/<int:pk>/amend/", views.amend, name="amend"),
    path("reports/<int:pk>/pdf/", views.pdf, name="pdf"),
    path("reports/<int:pk>/pdf/retry/", views.pdf_retry, name="pdf_retry"),
    # Patient portal.
    path("my/", views.my_home, name="my_home"),
    path("my/reports/<int:pk>/", views.my_report, name="my_report"),
    # History.
    path("patients/<int:patient_pk>/timeline/", views.timeline, name="timeline"),
]
