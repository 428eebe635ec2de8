from django.urls import path, re_path
from rest_framework import routers

from ttproject.vocabulary import NAME_PATTERN

from . import governance, image_views, views

router = routers.SimpleRouter(trailing_slash=False)
router.register("api/envs", views.EnvViewSet, basename="env")
router.register("api/hosts", views.HostViewSet, basename="host")

urlpatterns = [
    re_path(rf"^api/envs/(?P<pk>{NAME_PATTERN})/extend$", governance.EnvExtend.as_view(), name="env-extend"),
    path("api/quotas", governance.QuotaList.as_view(), name="quotas"),
    path("api/quotas/me", governance.QuotaMe.as_view(), name="quotas-me"),
    re_path(r"^api/quotas/(?P<owner>[*]|[\w.@+-]{1,150})$", governance.QuotaDetail.as_view(), name="quota"),
    path("api/events", governance.EventList.as_view(), name="events"),
    *router.urls,
    re_path(rf"^api/vms/(?P<pk>{NAME_PATTERN})$", views.VmDetail.as_view(), name="vm-detail"),
    re_path(rf"^api/vms/(?P<pk>{NAME_PATTERN})/console$", views.VmConsole.as_view(), name="vm-console"),
    path("api/images", image_views.ImagesView.as_view(), name="images"),
    re_path(r"^api/images/(?P<name>.+)$", image_views.ImageDetail.as_view(), name="image-detail"),
    path("api/status", views.fleet_status, name="status"),
]
