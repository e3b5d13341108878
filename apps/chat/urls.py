"""Pages of the chat app, mounted under /h/<hospital_slug>/."""

from django.urls import path

from . import views

app_name = "chat"
urlpatterns = [
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications.json", views.notifications_json, name="notifications_json"),
    path("messages/", views.inbox, name="inbox"),
    path("messages/<int:pk>/", views.conversation, name="conversation"),
]
