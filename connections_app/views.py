"""HTTP views: thin, they ask the models and answer."""

from django.contrib.admin.views.decorators import staff_member_required
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.http import JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from connections_app.db.fail_fast import fail_fast
from connections_app.error_handler import ErrorContext, get_global_error_handler
from connections_app.summary import health_summary
from realtime.protocol import SCHEMA_VERSION

#: What /health/ answers when it cannot read the checks: unknown, so a load balancer fails over.
DATABASE_UNAVAILABLE = {
    "status": "unknown",
    "critical_down": True,
    "stale": True,
    "error": "database unavailable",
    "checks": [],
}


@require_safe  # GET and HEAD: load balancers probe with either
@fail_fast()  # a probe: answer 503 in about one connect timeout, never wait for the database
def health(request):
    try:
        summary = health_summary()
    except DatabaseError as exc:
        context = ErrorContext(operation="health", endpoint=DEFAULT_DB_ALIAS)
        get_global_error_handler().handle_error(exc, context)
        return JsonResponse(DATABASE_UNAVAILABLE, status=503)
    return JsonResponse(summary, status=503 if summary["critical_down"] else 200)


@staff_member_required
def dashboard(request):
    return render(request, "dashboard.html", {"schema_version": SCHEMA_VERSION})
