"""The localvm URLconf with the page included first, for in-process page tests."""

from django.urls import include, path

from ttproject.urls.localvm import urlpatterns as localvm_patterns

urlpatterns = [path("", include("localvm.pages.urls")), *localvm_patterns]
