"""Routes every role has: health, OpenAPI schema + Swagger UI, JSON error handlers."""

from django.conf import settings
from django.urls import path
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework import routers, serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from ttproject.tasks.views import TaskViewSet

VERSION = "0.1.0"


@extend_schema(responses=inline_serializer("Health", {
    "status": serializers.CharField(), "role": serializers.CharField(), "version": serializers.CharField()}))
@api_view(["GET"])
def health(request):
    """Server status and version."""
    return Response({"status": "ok", "role": settings.ROLE, "version": VERSION})


# The schema and its viewer are documentation, not data: open, so a browser can show them.
docs_patterns = [
    path("api/schema/", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]),
         name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema", authentication_classes=[],
                                                          permission_classes=[]), name="swagger-ui"),
]

task_router = routers.SimpleRouter(trailing_slash=False)
task_router.register("api/tasks", TaskViewSet, basename="task")

common_patterns = [path("api/health", health, name="health"), *docs_patterns]

# JSON error pages, as (handler400, handler403, handler404, handler500): each role's root URLconf sets those
# names from this, since Django looks them up there
ERROR_HANDLERS = ("ttproject.api.exceptions.bad_request", "ttproject.api.exceptions.permission_denied",
                  "ttproject.api.exceptions.page_not_found", "ttproject.api.exceptions.server_error")
