"""Routes of the fleet app: the pages (dashboard, owners' pages) first, then the API under api/."""

from django.urls import include, path

urlpatterns = [path("", include("fleet.pages.urls")), path("", include("fleet.api.urls"))]
