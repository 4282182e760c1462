"""The dashboard page and a check's page: staff only; live data arrives over the WebSocket."""

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.decorators import permission_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from connections_app import check_page as page
from connections_app.models import HealthCheck
from realtime.protocol import SCHEMA_VERSION

VIEW_CHECKS = "connections_app.view_healthcheck"


@staff_member_required
def dashboard(request):
    return render(request, "dashboard.html", {"schema_version": SCHEMA_VERSION})


@require_GET
@staff_member_required
@permission_required(VIEW_CHECKS, raise_exception=True)
def check(request, pk: int):
    found = get_object_or_404(HealthCheck, pk=pk)
    context = {
        "check": found,
        "data": page.page_data(found),
        "windows": page.maintenance_windows(found),
        "channels": page.alert_channels(found),
        "ranges": list(page.RANGES),
        "schema_version": SCHEMA_VERSION,
    }
    return render(request, "check.html", context)


@require_GET
@staff_member_required
@permission_required(VIEW_CHECKS, raise_exception=True)
def check_data(request, pk: int):
    """The page's figures as JSON: on a change of range, and every few minutes while open."""
    span = request.GET.get("range", page.DEFAULT_RANGE)
    if span not in page.RANGES:
        return JsonResponse({"error": f"range: one of {', '.join(page.RANGES)}"}, status=400)
    found = get_object_or_404(HealthCheck, pk=pk)
    return JsonResponse(page.page_data(found, span))
