"""URLconf of the controller role."""

from django.contrib import admin  # noqa: F401
from django.urls import include, path

from fleet.routing import websocket_urlpatterns as fleet_websockets
from ttproject.tasks.routing import websocket_urlpatterns as task_websockets

from .common import common_patterns, handlers, task_router  # noqa: F401

urlpatterns = [
    path("admin/", admin.site.urls),
    *task_router.urls,
    *common_patterns,
    path("", include("fleet.urls")),
]

handler400 = handlers["handler400"]
handler403 = handlers["handler403"]
handler404 = handlers["handler404"]
handler500 = handlers["handler500"]

# WebSockets (ttproject/asgi.py): a task's progress, and the fleet's events.
websocket_urlpatterns = [*task_websockets, *fleet_websockets]
