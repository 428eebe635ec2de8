"""Route of the localvm page (included at the root by localvm/urls.py)."""

from django.urls import path

from . import views

urlpatterns = [path("", views.index, name="localvm-page")]
