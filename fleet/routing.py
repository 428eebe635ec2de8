from django.urls import re_path

from .event_stream import DashboardConsumer, EventConsumer

websocket_urlpatterns = [re_path(r"^ws/events/?$", EventConsumer.as_asgi()),
                         re_path(r"^ws/dashboard/?$", DashboardConsumer.as_asgi())]
