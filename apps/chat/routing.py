"""WebSocket routes (see imagemedix/asgi.py). Every path carries the hospital slug; the
consumers resolve the tenant from it in connect()."""

from django.urls import path

from . import consumers

websocket_urlpatterns = [
    # Channels routes ASGI applications with Django's path(), whose stubs expect a view.
    path("ws/h/<slug:hospital_slug>/notifications/", consumers.NotificationConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/h/<slug:hospital_slug>/chat/<int:conversation_id>/", consumers.ChatConsumer.as_asgi()),  # type: ignore[arg-type]
]
