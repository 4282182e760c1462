from django.urls import path

from realtime.consumers import DashboardConsumer

websocket_urlpatterns = [
    path("ws/health/", DashboardConsumer.as_asgi()),
]
