"""URLconf of the controller role."""

from django.contrib import admin  # noqa: F401
from django.urls import include, path

from fleet.routing import websocket_urlpatterns as fleet_websockets
from ttproject.tasks.routing import websocket_urlpatterns as task_websockets

from .common import ERROR_HANDLERS, common_patterns, task_router

urlpatterns = [
    path("admin/", admin.site.urls),
    *task_router.urls,
    *common_patterns,
    path("", include("fleet.urls")),
]


# WebSockets (ttproject/asgi.py): a task's progress, and the fleet's events.
websocket_urlpatterns = [*task_websockets, *fleet_websockets]

handler400, handler403, handler404, handler500 = ERROR_HANDLERS  # JSON error pages
