"""Staff see who watches the dashboard: read-only, live rows only."""

from django.contrib import admin

from connections_app.admin_lookups import DeclaredLookupsOnly
from realtime.limits import limits
from realtime.models import ConnectedClient


@admin.register(ConnectedClient)
class ConnectedClientAdmin(DeclaredLookupsOnly, admin.ModelAdmin):
    list_display = ["user", "connected_at", "server", "delivered", "retries", "seen_at"]
    list_filter = ["server"]
    search_fields = ["user"]

    def get_queryset(self, request):
        return super().get_queryset(request).live(limits().registry_expiry)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
