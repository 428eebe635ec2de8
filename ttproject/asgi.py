"""ASGI entry point of every role: HTTP through Django, WebSockets through Channels."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ttproject.settings")

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import OriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402

django_app = get_asgi_application()

from importlib import import_module  # noqa: E402

from ttproject.tasks.routing import websocket_urlpatterns as task_websockets  # noqa: E402

# A role's URLconf may compose its own WebSocket routes (the controller adds /ws/events); else the tasks' only.
websocket_urlpatterns = getattr(import_module(settings.ROOT_URLCONF), "websocket_urlpatterns", task_websockets)


class BrowserOriginValidator(OriginValidator):
    """Refuse handshakes from a web page of a foreign Origin (on localvm: anything but loopback).

    Browsers always send Origin, so that is where DNS-rebinding and cross-site attempts come from. A client
    without Origin is a script or CLI, not a page; it still needs its token, so it is let through.
    """

    def valid_origin(self, parsed_origin):
        return parsed_origin is None or self.validate_origin(parsed_origin)


application = ProtocolTypeRouter(
    {
        "http": django_app,
        "websocket": BrowserOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
                                            settings.ALLOWED_HOSTS),
    }
)
