"""URLconf of the agent role."""

from django.contrib import admin  # noqa: F401
from django.urls import include, path

from .common import ERROR_HANDLERS, common_patterns, task_router

urlpatterns = [
    *task_router.urls,  # image imports run as tasks (agent/image_import.py)
    *common_patterns,
    path("", include("agent.urls")),
]

handler400, handler403, handler404, handler500 = ERROR_HANDLERS  # JSON error pages
