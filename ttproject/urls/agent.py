"""URLconf of the agent role."""

from django.contrib import admin  # noqa: F401
from django.urls import include, path

from .common import common_patterns, handlers, task_router  # noqa: F401

urlpatterns = [
    *task_router.urls,  # image imports run as tasks (agent/image_import.py)
    *common_patterns,
    path("", include("agent.urls")),
]

handler400 = handlers["handler400"]
handler403 = handlers["handler403"]
handler404 = handlers["handler404"]
handler500 = handlers["handler500"]
