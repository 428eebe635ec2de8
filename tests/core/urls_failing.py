"""A URLconf whose views fail with an internal error, to see what a client gets back (tests/core)."""

from django.urls import path
from rest_framework.decorators import api_view, authentication_classes, permission_classes

from ttproject.urls.common import ERROR_HANDLERS

SECRET = "password=hunter2 at /srv/internal/path"


@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def api_bug(request):
    raise RuntimeError(SECRET)


def page_bug(request):
    raise KeyError(SECRET)


urlpatterns = [path("api/bug", api_bug), path("page/bug", page_bug)]
handler500 = ERROR_HANDLERS[3]
