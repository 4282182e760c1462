"""HTTP views: thin, they ask the models and answer."""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from connections_app.summary import health_summary


@require_GET
def health(request):
    summary = health_summary()
    return JsonResponse(summary, status=503 if summary["critical_down"] else 200)


@staff_member_required
def dashboard(request):
    return render(request, "dashboard.html", {"schema_version": 1})
