"""The dashboard page: staff with ``view_healthcheck``; its data arrives over the WebSocket."""

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import render

from connections_app.permissions import may_watch
from realtime.protocol import SCHEMA_VERSION


@staff_member_required
def dashboard(request):
    # Staff who may not view checks are told so (403), not sent to a login they already passed.
    if not may_watch(request.user):
        raise PermissionDenied("viewing checks needs the view_healthcheck permission")
    return render(request, "dashboard.html", {"schema_version": SCHEMA_VERSION})
