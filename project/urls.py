from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from connections_app import ping, public_views, views
from realtime import views as realtime_views

# The admin's frame names the project; templates/admin/base_site.html links the dashboard, so
# "View site" (which only redirects there) goes.
admin.site.site_header = "Connection Health administration"
admin.site.site_title = "Connection Health"
admin.site.index_title = "Checks and their records"
admin.site.site_url = None
# The app list beside every page took 260 px: the check list did not fit 1280 px with it.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("admin/", admin.site.urls),
    path("health/", views.health, name="health"),
    path("metrics", views.metrics, name="metrics"),
    path("status/", public_views.status, name="status"),
    path("badge/<str:token>/status.svg", public_views.status_badge, name="badge-status"),
    path("badge/<str:token>/uptime.svg", public_views.uptime_badge, name="badge-uptime"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("ping/<str:token>", ping.ping, name="ping"),
    path("ping/<str:token>/<str:signal>", ping.ping, name="ping-signal"),
    path("dashboard/", realtime_views.dashboard, name="dashboard"),
    path("dashboard/checks/<int:pk>/", realtime_views.check, name="check-page"),
    path("dashboard/checks/<int:pk>/data/", realtime_views.check_data, name="check-data"),
    path("", RedirectView.as_view(pattern_name="dashboard", permanent=False)),
]
