"""HTTP views: thin, they ask the models and answer."""

from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.http import JsonResponse
from django.views.decorators.http import require_safe

from connections_app.db.fail_fast import fail_fast
from connections_app.error_handler import report
from connections_app.summary import health_summary

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
        report(exc, "health", DEFAULT_DB_ALIAS)
        return JsonResponse(DATABASE_UNAVAILABLE, status=503)
    return JsonResponse(summary, status=503 if summary["critical_down"] else 200)
