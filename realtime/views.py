"""The dashboard page and a check's page: staff with ``view_healthcheck``; live data arrives
over the WebSocket."""

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from connections_app import check_page as page
from connections_app.alerts.enqueue import channels_for
from connections_app.models import HealthCheck
from connections_app.permissions import may_watch
from realtime.protocol import SCHEMA_VERSION


@staff_member_required
def dashboard(request):
    _may_watch_or_403(request)
    return render(request, "dashboard.html", {"schema_version": SCHEMA_VERSION})


def _may_watch_or_403(request) -> None:
    # Staff who may not view checks are told so (403), not sent to a login they already passed.
    if not may_watch(request.user):
        raise PermissionDenied("viewing checks needs the view_healthcheck permission")


@require_GET
@staff_member_required
def check(request, pk: int):
    _may_watch_or_403(request)
    found = get_object_or_404(HealthCheck, pk=pk)
    context = {
        "check": found,
        "data": page.page_data(found),
        "windows": page.maintenance_windows(found),
        "channels": channels_for(found),
        "ranges": list(page.RANGES),
        "schema_version": SCHEMA_VERSION,
    }
    return render(request, "check.html", context)


@require_GET
@staff_member_required
def check_data(request, pk: int):
    """The page's figures as JSON: on a change of range, and every few minutes while open."""
    _may_watch_or_403(request)
    span = request.GET.get("range", page.DEFAULT_RANGE)
    if span not in page.RANGES:
        return JsonResponse({"error": f"range: one of {', '.join(page.RANGES)}"}, status=400)
    found = get_object_or_404(HealthCheck, pk=pk)
    return JsonResponse(page.page_data(found, span))
