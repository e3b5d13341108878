"""Pages of the reports app, mounted under /h/<hospital_slug>/."""

from django.urls import path

from . import views

app_name = "reports"
urlpatterns = [
    # Clinicians: every study they see, by reporting state.
    path("worklist/", views.worklist, name="worklist"),
    # Doctor: read the image and the AI result, write the report; sign after confirming it.
    path("studies/<int:study_pk>/review/", views.review, name="review"),
    # Staff: every version of a report, amendments, PDFs.
    path("reports/<int:pk>/", views.detail, name="detail"),
    path("reports/<int:pk>/sign/", views.sign, name="sign"),
    path("reports/<int:pk>/amend/", views.amend, name="amend"),
    path("reports/<int:pk>/pdf/", views.pdf, name="pdf"),
    path("reports/<int:pk>/pdf/retry/", views.pdf_retry, name="pdf_retry"),
    # Patient portal.
    path("my/", views.my_home, name="my_home"),
    path("my/reports/<int:pk>/", views.my_report, name="my_report"),
    path("my/reports/<int:pk>/image/", views.my_report_image, name="my_report_image"),
    # History.
    path("patients/<int:patient_pk>/timeline/", views.timeline, name="timeline"),
]
