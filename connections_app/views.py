"""HTTP views: thin, they ask the models and answer."""

import hmac

from django.conf import settings
from django.contrib.staticfiles import finders
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.http import FileResponse, HttpRequest, JsonResponse
from django.views.decorators.http import require_safe

from connections_app.db.fail_fast import fail_fast
from connections_app.error_handler import report
from connections_app.errors import ErrorCategory, missing_tables_message
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
        missing = missing_tables_message(exc)
        if missing:  # in the words that say what to do, one line, no traceback
            report(missing, "health", DEFAULT_DB_ALIAS, category=ErrorCategory.MISSING_TABLES)
        else:
            report(exc, "health", DEFAULT_DB_ALIAS)
        error = {"error": missing} if missing else {}
        # The shape of the normal answer, with nothing in it.
        empty = {"checks": []} if detail else {"counts": {}}
        return JsonResponse(DATABASE_UNAVAILABLE | error | empty, status=503)
    return JsonResponse(document, status=503 if document["critical_down"] else 200)


def may_see_detail(request: HttpRequest) -> bool:
    """Staff who may view checks, or a request carrying ``Authorization: Bearer HEALTH_TOKEN``:
    the names, kinds and tags of every check tell an outsider what the backend depends on."""
    token = settings.HEALTH_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.encode(), token.encode()):
        return True
    return may_watch(request.user)


@require_safe
def favicon(request: HttpRequest) -> FileResponse:
    """``/favicon.ico``: browsers ask for it on every page whatever the pages link to."""
    response = FileResponse(open(finders.find("favicon.ico"), "rb"), content_type="image/x-icon")
    response["Cache-Control"] = "public, max-age=86400"
    return response
