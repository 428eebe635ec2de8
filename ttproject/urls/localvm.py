"""URLconf of the localvm role."""

from django.contrib import admin  # noqa: F401
from django.urls import include, path

from .common import ERROR_HANDLERS, common_patterns, task_router

urlpatterns = [
    *task_router.urls,
    *common_patterns,
    path("", include("localvm.urls")),
]

handler400, handler403, handler404, handler500 = ERROR_HANDLERS  # JSON error pages
