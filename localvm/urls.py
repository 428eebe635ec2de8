"""Routes of the localvm app. Static paths come before the name routes, and a name route never
swallows a suffix: `api/vms/<name>/config` is its own route (names of pulled OCI images contain '/')."""

from django.urls import include, path, re_path

from .api import views

NAME = r"(?P<name>[^?#]+?)"


urlpatterns = [
    path("", include("localvm.pages.urls")),
    path("api/settings/github-token", views.GitHubTokenView.as_view(), name="localvm-github-token"),
    path("api/tart/version", views.TartVersionView.as_view(), name="localvm-tart-version"),
    path("api/vms", views.VMListView.as_view(), name="localvm-vms"),
    path("api/vms/available-images", views.AvailableImagesView.as_view(), name="localvm-available-images"),
    path("api/vms/categorized", views.CategorizedView.as_view(), name="localvm-categorized"),
    path("api/vms/refresh", views.RefreshView.as_view(), name="localvm-refresh"),
    path("api/vms/pull", views.PullView.as_view(), name="localvm-pull"),
    path("api/vms/create", views.CreateView.as_view(), name="localvm-create"),
    re_path(rf"^api/vms/{NAME}/config$", views.VMConfigView.as_view(), name="localvm-vm-config"),
    re_path(rf"^api/vms/{NAME}/start$", views.StartView.as_view(), name="localvm-vm-start"),
    re_path(rf"^api/vms/{NAME}/stop$", views.StopView.as_view(), name="localvm-vm-stop"),
    re_path(rf"^api/vms/{NAME}/delete$", views.DeleteView.as_view(), name="localvm-vm-delete"),
    re_path(rf"^api/vms/{NAME}/clone$", views.CloneView.as_view(), name="localvm-vm-clone"),
    re_path(rf"^api/vms/{NAME}$", views.VMDetailView.as_view(), name="localvm-vm"),
]
