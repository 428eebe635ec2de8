from django.urls import path, re_path
from rest_framework import routers

from ttproject.vocabulary import NAME_PATTERN

from . import image_views, views

router = routers.SimpleRouter(trailing_slash=False)
router.register("api/envs", views.EnvViewSet, basename="env")
router.register("api/hosts", views.HostViewSet, basename="host")

urlpatterns = [
    *router.urls,
    re_path(rf"^api/vms/(?P<pk>{NAME_PATTERN})$", views.VmDetail.as_view(), name="vm-detail"),
    re_path(rf"^api/vms/(?P<pk>{NAME_PATTERN})/console$", views.VmConsole.as_view(), name="vm-console"),
    path("api/images", image_views.ImagesView.as_view(), name="images"),
    re_path(r"^api/images/(?P<name>.+)$", image_views.ImageDetail.as_view(), name="image-detail"),
    path("api/status", views.fleet_status, name="status"),
]
