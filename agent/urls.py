"""Routes of the agent app (fleet contract: /api/info, /api/images, /api/vms...)."""

from django.urls import path
from rest_framework import routers

from agent.api import views

router = routers.SimpleRouter(trailing_slash=False)
router.register("api/vms", views.VmViewSet, basename="vm")

urlpatterns = [
    path("api/info", views.info, name="agent-info"),
    path("api/images", views.images, name="agent-images"),
    *router.urls,
]
