"""Routes of the controller's pages (included at the root by fleet/urls.py)."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("dashboard.json", views.dashboard_json, name="dashboard-json"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="login"), name="logout"),
    path("my/", views.my_envs, name="my-envs"),
    path("my/new", views.env_new, name="my-env-new"),
    path("my/token", views.api_token, name="my-token"),
    path("my/envs/<str:env_id>", views.env_detail, name="my-env"),
]
