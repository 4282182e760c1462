"""The pages anyone may read: ``/status/`` and the badges. Thin: ``status_page`` decides
what is shown, ``badges`` draws.

Each is cached in Django's cache (per process, the default in-memory cache) for a few
seconds: a crowd reloading the page during an outage costs a few queries every
``STATUS_CACHE_SECONDS``, not a few per visitor. Only answers of 200 are cached, so an
unknown badge token costs one indexed lookup each time.
"""

from __future__ import annotations

from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import cache_page
from django.views.decorators.http import require_safe

from connections_app import badges
from connections_app.status_page import (
    badge_check,
    public_name,
    status_page,
    uptime_30d,
    uptime_text,
)
from connections_app.views import report_database_error

#: Seconds a status page or badge is served from the cache (and may be kept by a browser).
STATUS_CACHE_SECONDS = 5
BADGE_CACHE_SECONDS = 60
SVG = "image/svg+xml; charset=utf-8"


@require_safe
@cache_page(STATUS_CACHE_SECONDS)
def status(request: HttpRequest) -> HttpResponse:
    try:
        page = status_page()
    except DatabaseError as exc:
        # A 503 is not cached: the next visit tries again. The reason goes to the log only.
        report_database_error(exc, "status_page")
        return render(request, "status_unavailable.html", status=503)
    return render(request, "status.html", page)


@require_safe
@cache_page(BADGE_CACHE_SECONDS)
def status_badge(request: HttpRequest, token: str) -> HttpResponse:
    check = _public_check(token)
    return _svg(badges.status_badge(public_name(check["public_name"]), check["status"]))


@require_safe
@cache_page(BADGE_CACHE_SECONDS)
def uptime_badge(request: HttpRequest, token: str) -> HttpResponse:
    check = _public_check(token)
    percent = uptime_30d(check["pk"])
    return _svg(badges.uptime_badge("uptime 30d", percent, uptime_text(percent)))


def _public_check(token: str) -> dict:
    check = badge_check(token)
    if check is None:  # unknown, or not public: the same answer, so neither is told apart
        raise Http404("No such badge.")
    return check


def _svg(body: str) -> HttpResponse:
    response = HttpResponse(body, content_type=SVG)
    response["Cache-Control"] = f"public, max-age={BADGE_CACHE_SECONDS}"
    return response
