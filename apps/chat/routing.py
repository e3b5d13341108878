"""WebSocket routes (see imagemedix/asgi.py). Every path carries the hospital slug; the
consumers resolve the tenant from it in connect()."""

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    path("ws/h/<slug:hospital_slug>/notifications/", consumers.NotificationConsumer.as_asgi()),
    path("ws/h/<slug:hospital_slug>/chat/<int:conversation_id>/", consumers.ChatConsumer.as_asgi()),
]
