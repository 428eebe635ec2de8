"""Routes of the agent app (fleet contract: /api/info, /api/images, /api/vms...)."""

from django.urls import path, re_path
from rest_framework import routers

from agent import image_serve
from agent.api import image_views, views

router = routers.SimpleRouter(trailing_slash=False)
router.register("api/vms", views.VmViewSet, basename="vm")

urlpatterns = [
    path("api/info", views.info, name="agent-info"),
    path("api/images", image_views.images, name="agent-images"),
    # docker references have slashes ("ttstack/tiny:latest"): names are everything before the last part
    re_path(r"^api/images/(?P<name>.+)/ticket$", image_views.image_ticket, name="agent-image-ticket"),
    # authenticated by its ticket, not the key: another agent downloads it (agent/image_serve.py)
    re_path(r"^api/images/(?P<name>.+)/content$", image_serve.content, name="agent-image-content"),
    re_path(r"^api/images/(?P<name>.+)$", image_views.image_detail, name="agent-image"),
    *router.urls,
]
