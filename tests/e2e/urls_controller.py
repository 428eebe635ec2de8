"""The controller's URLconf with the pages included, for in-process page tests (works before and after
fleet/urls.py includes fleet.pages.urls)."""

from django.urls import include, path

from ttproject.urls.controller import urlpatterns as controller_patterns

urlpatterns = [path("", include("fleet.pages.urls")), *controller_patterns]
