"""Downloads of the diagnosis app, mounted under /h/<hospital_slug>/."""

from django.urls import path, re_path

from . import views

app_name = "diagnosis"
urlpatterns = [
    path("studies/<int:study_pk>/overlay.png", views.overlay, name="overlay"),
    path("studies/<int:study_pk>/heatmap.png", views.overlay, {"layer": "heatmap"}, name="heatmap"),
    path("studies/<int:study_pk>/status.json", views.study_status, name="study_status"),
    path("models/", views.models_dashboard, name="models"),
    re_path(
        r"^models/versions/(?P<version_pk>[0-9]+)/(?P<action>shadow|ab|activate|rollback)/$",
        views.deployment_action,
        name="deployment_action",
    ),
    path("models/alerts/<int:alert_pk>/acknowledge/", views.acknowledge_alert, name="acknowledge_alert"),
]
