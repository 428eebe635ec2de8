"""Routes of the fleet app (API under api/, pages at the root)."""

from django.urls import include, path

urlpatterns = [path("", include("fleet.api.urls"))]
