"""Pages of the diagnosis app, mounted under /h/<hospital_slug>/."""

from django.urls import path

from . import views

app_name = "diagnosis"
urlpatterns = [
    path("studies/<int:study_pk>/overlay.png", views.overlay, name="overlay"),
    path("studies/<int:study_pk>/status.json", views.study_status, name="study_status"),
]
