from django.urls import path
from rest_framework import routers

from . import views

router = routers.SimpleRouter(trailing_slash=False)
router.register("api/envs", views.EnvViewSet, basename="env")
router.register("api/hosts", views.HostViewSet, basename="host")

urlpatterns = [
    *router.urls,
    path("api/vms/<str:pk>", views.VmDetail.as_view(), name="vm-detail"),
    path("api/images", views.images, name="images"),
    path("api/status", views.fleet_status, name="status"),
    path("", views.index, name="index"),
]
