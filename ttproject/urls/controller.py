"""URLconf of the controller role."""

from django.contrib import admin  # noqa: F401
from django.urls import include, path

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
