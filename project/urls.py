from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from connections_app import views
from realtime import views as realtime_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", views.health, name="health"),
    path("dashboard/", realtime_views.dashboard, name="dashboard"),
    path("", RedirectView.as_view(pattern_name="dashboard", permanent=False)),
]
