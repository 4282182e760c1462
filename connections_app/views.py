"""HTTP views: thin, they ask the models and answer."""

import hmac

from django.conf import settings
from django.contrib.staticfiles import finders
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST

from connections_app.db.fail_fast import fail_fast
from connections_app.error_handler import report
from connections_app.errors import ErrorCategory, missing_tables_message
from connections_app.metrics import render as render_metrics
from connections_app.permissions import may_watch
from connections_app.summary import health_counts, health_summary

#: What /health/ answers when it cannot read the checks: unknown, so a load balancer fails over.
DATABASE_UNAVAILABLE = {
    "status": "unknown",
    "critical_down": True,
    "stale": True,
    "error": "database unavailable",
}


@require_safe  # GET and HEAD: load balancers probe with either
@fail_fast()  # a probe: answer 503 in about one connect timeout, never wait for the database
def health(request: HttpRequest) -> JsonResponse:
    tag = request.GET.get("tag") or None
    detail = False
    try:
        detail = may_see_detail(request)  # reads the session: the database may be away too
        document = health_summary(tag) if detail else health_counts(tag)
    except DatabaseError as exc:
        missing = report_database_error(exc, "health")
        error = {"error": missing} if missing else {}
        # The shape of the normal answer, with nothing in it.
        empty = {"checks": []} if detail else {"counts": {}}
        return JsonResponse(DATABASE_UNAVAILABLE | error | empty, status=503)
    return JsonResponse(document, status=503 if document["critical_down"] else 200)


def report_database_error(exc: DatabaseError, operation: str) -> str | None:
    """Report a read that failed in one line; the "run `manage.py migrate`" line when the
    tables are missing (returned, to answer with), else None."""
    missing = missing_tables_message(exc)
    if missing:  # in the words that say what to do, one line, no traceback
        report(missing, operation, DEFAULT_DB_ALIAS, category=ErrorCategory.MISSING_TABLES)
    else:
        report(exc, operation, DEFAULT_DB_ALIAS)
    return missing


def may_see_detail(request: HttpRequest) -> bool:
    """Staff who may view checks, or a request carrying ``Authorization: Bearer HEALTH_TOKEN``:
    the names, kinds and tags of every check tell an outsider what the backend depends on."""
    return bearer_or_staff(request, settings.HEALTH_TOKEN)


def bearer_or_staff(request: HttpRequest, token: str) -> bool:
    """``Authorization: Bearer <token>`` (compared in constant time; an empty ``token``
    admits nobody), or a staff session that may view checks."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode()):
        return True
    return may_watch(request.user)


@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """``/metrics`` for Prometheus: ``METRICS_TOKEN`` as a bearer token, or a staff session.
    Anyone else gets 401: check names and kinds say what the backend depends on."""
    try:
        if not bearer_or_staff(request, settings.METRICS_TOKEN):
            response = _text("Unauthorized: send Authorization: Bearer METRICS_TOKEN.", 401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        body = render_metrics()
    except DatabaseError as exc:
        # Not an empty 200: Prometheus marks the scrape failed (up == 0) and says so.
        return _text(report_database_error(exc, "metrics") or "database unavailable", 503)
    response = HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


def _text(line: str, status: int) -> HttpResponse:
    return HttpResponse(f"{line}\n", status=status, content_type="text/plain; charset=utf-8")


@require_safe
def favicon(request: HttpRequest) -> FileResponse:
    """``/favicon.ico``: browsers ask for it on every page whatever the pages link to."""
    response = FileResponse(open(finders.find("favicon.ico"), "rb"), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response
