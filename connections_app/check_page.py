"""What one check's page shows (``/dashboard/checks/<id>/``, the admin's change page): its
stored state, uptime and latency from the rollups (``history``), the 90 daily segments, the
latency series, its state changes with their reasons, its recent results with their full
(redacted) error messages, and the maintenance windows and alert channels that cover it.

A fixed number of queries, none a scan of raw results (the recent results are the newest few
by the (check, checked_at) key). Never a target or a channel's address: both may hold secrets.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django.utils import timezone

from connections_app import history
from connections_app.maintenance import MaintenanceWindow
from connections_app.models import CheckResult, HealthCheck, StateChange
from connections_app.redaction import redact
from connections_app.summary import check_summary

#: The chart's ranges: key -> how far back.
RANGES = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
DEFAULT_RANGE = "24h"
BAR_DAYS = 90
CHANGES_SHOWN = 50
RESULTS_SHOWN = 30


def series(check: HealthCheck, span: str, now: datetime | None = None) -> list[dict]:
    """The chart's hourly points over ``span`` (a key of ``RANGES``)."""
    now = now or timezone.now()
    return history.latency_series(check.pk, now - RANGES[span], now)


def page_data(check: HealthCheck, span: str = DEFAULT_RANGE, now: datetime | None = None) -> dict:
    """Everything the page shows, JSON-ready."""
    now = now or timezone.now()
    ids = [check.pk]
    return {
        "id": check.pk,
        "check": check_summary(check, now),
        "interval": check.interval,
        "uptime": history.uptime_windows(ids, now).get(check.pk, dict.fromkeys(history.WINDOWS)),
        "latency": {
            key: history.latency_percentiles(ids, now - length, now).get(
                check.pk, dict.fromkeys(history.QUANTILES)
            )
            for key, length in RANGES.items()
        },
        "bars": history.daily_bars(ids, BAR_DAYS, now).get(check.pk) or _empty_bars(now),
        "range": span,
        "series": series(check, span, now),
        # The chart's time axis is the whole range, however few hours have points.
        "series_span": [int((now - RANGES[span]).timestamp()), int(now.timestamp())],
        "changes": [_change(c) for c in check.state_changes.all()[:CHANGES_SHOWN]],
        "results": [_result(r) for r in recent_results(check)],
    }


def _empty_bars(now: datetime) -> list[dict]:
    today = now.astimezone(UTC).date()
    return [
        {
            "day": (today - timedelta(days=BAR_DAYS - 1 - n)).isoformat(),
            "results": 0,
            "failures": 0,
            "uptime": None,
        }  # fmt: skip
        for n in range(BAR_DAYS)
    ]


def recent_results(check: HealthCheck) -> list[CheckResult]:
    return list(
        CheckResult.objects.filter(health_check=check)
        .order_by("-checked_at")
        .only("checked_at", "ok", "latency_ms", "http_status", "error_category", "error_message")[
            :RESULTS_SHOWN
        ]
    )


def _change(change: StateChange) -> dict:
    return {
        "at": change.at.isoformat(),
        "from": change.from_status,
        "to": change.to_status,
        "reason_category": change.reason_category,
        # Stored redacted; redacted again on the way out, as every page does with errors.
        "reason_message": redact(change.reason_message),
        "during_maintenance": change.during_maintenance,
    }


def _result(result: CheckResult) -> dict:
    return {
        "checked_at": result.checked_at.isoformat(),
        "ok": result.ok,
        "latency_ms": None if result.latency_ms is None else round(result.latency_ms, 2),
        "http_status": result.http_status,
        "error_category": result.error_category,
        "error_message": redact(result.error_message),
    }


def maintenance_windows(check: HealthCheck) -> list[MaintenanceWindow]:
    """The windows that cover the check (``scope.covers``, through ``applies_to``)."""
    windows = MaintenanceWindow.objects.prefetch_related("checks").order_by("name")
    return [w for w in windows if w.applies_to(check.pk, check.tag_list)]
