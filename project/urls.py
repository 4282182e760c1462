from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from connections_app import ping, views
from realtime import views as realtime_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", views.health, name="health"),
    path("ping/<str:token>", ping.ping, name="ping"),
    path("ping/<str:token>/<str:signal>", ping.ping, name="ping-signal"),
    path("dashboard/", realtime_views.dashboard, name="dashboard"),
    path("", RedirectView.as_view(pattern_name="dashboard", permanent=False)),
]
