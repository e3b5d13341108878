"""ASGI entry point: HTTP through Django, WebSockets through Channels.

WebSocket connections are refused unless their Origin is this very site, scheme, host and port
(imagemedix/websocket_origin.py), then authenticated from the session cookie; each consumer
checks hospital membership in connect() and re-validates access on every frame and push.
"""

import os
import tempfile

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagemedix.settings")
django_asgi_app = get_asgi_application()
# Request bodies the server spools to disk (Twisted under daphne does from 100 KB) go to the
# owner-only PRIVATE_TEMP_DIR in var/, not to the shared system temporary directory.
tempfile.tempdir = str(settings.PRIVATE_TEMP_DIR)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from apps.chat.routing import websocket_urlpatterns  # noqa: E402
from imagemedix.websocket_origin import SameOriginValidator  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # URLRouter takes Django URL patterns whose callbacks are ASGI applications; its stubs want a subclass.
        "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),  # type: ignore[arg-type]
    }
)
