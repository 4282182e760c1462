"""What /health/ serves: to anyone, the overall status and counts (``health_counts``); to staff
and holders of ``HEALTH_TOKEN``, every check's summary (``health_summary``), which is also what
``get_health_summary()`` returns."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple, TypedDict

from django.db.models import Count, Min, QuerySet
from django.utils import timezone

from connections_app.history import summary_figures
from connections_app.models import DOWN, HealthCheck, overall_status, split_tags
from connections_app.runners import live_runners, runner_summary

#: A check's latest result older than this many intervals (plus its timeout and a grace) is
#: stale: nobody is running the checks (the runner stopped, or cannot store results), and the
#: status shown is history, not the present.
STALE_AFTER_RUNS = 3
STALE_GRACE = 10.0


class CheckSummary(TypedDict):
    name: str
    kind: str
    status: str
    since: str | None
    flapping: bool
    critical: bool
    tags: list[str]
    latency_ms: float | None
    last_checked_at: str | None
    error_category: str
    #: The last failure in words (stored redacted), "" after a success.
    error_message: str
    stale: bool
    stale_after_s: float


class HistoryFigures(TypedDict):
    #: Share of successful results in the last 24 h, 0..1; None without results.
    uptime_24h: float | None
    #: Uptime in percent over "24h", "7d", "30d", "90d" (None: no result in the window).
    uptime: dict[str, float | None]
    #: Latency of the successes of the last 24 h, ms: "p50", "p95", "p99".
    latency_24h: dict[str, float | None]


class HealthSummaryCheck(CheckSummary, HistoryFigures):
    pass


class HealthSummary(TypedDict):
    status: str
    critical_down: bool
    stale: bool
    generated_at: str
    checks: list[HealthSummaryCheck]
    #: The runners seen lately, with their scheduling lag (``runners.runner_summary``).
    runners: list[dict]


#: The fields ``check_summary`` reads: a list of every check loads these only.
SUMMARY_FIELDS = (
    "name",
    "kind",
    "status",
    "status_since",
    "flapping",
    "critical",
    "tags",
    "enabled",
    "interval",
    "timeout",
    "last_latency_ms",
    "last_checked_at",
    "last_error_category",
    "last_error_message",
)


class CheckRow(NamedTuple):
    """A check as a list of every check reads it (``SUMMARY_FIELDS`` after its id): plain
    values, since making 10,000 model instances cost more than reading their rows."""

    pk: int
    name: str
    kind: str
    status: str
    status_since: datetime | None
    flapping: bool
    critical: bool
    tags: str
    enabled: bool
    interval: float
    timeout: float
    last_latency_ms: float | None
    last_checked_at: datetime | None
    last_error_category: str
    last_error_message: str

    @property
    def tag_list(self) -> list[str]:
        return split_tags(self.tags)


def check_rows(checks: QuerySet, *more: str) -> list[tuple[CheckRow, ...]]:
    """``checks`` as ``CheckRow`` values, each with the values of the fields ``more`` after
    it: ``(row, *more values)``."""
    count = len(CheckRow._fields)
    return [
        (CheckRow(*values[:count]), *values[count:])
        for values in checks.values_list("pk", *SUMMARY_FIELDS, *more)
    ]


def stale_after(check: HealthCheck | CheckRow) -> float:
    """Seconds after its latest result at which a check's status is stale."""
    return _stale_after(check.interval, check.timeout)


def _stale_after(interval: float, timeout: float) -> float:
    return STALE_AFTER_RUNS * interval + timeout + STALE_GRACE


def is_stale(check: HealthCheck | CheckRow, now: datetime) -> bool:
    """Whether an enabled check's latest result is older than ``stale_after`` at ``now``."""
    return _stale(check.enabled, check.last_checked_at, check.interval, check.timeout, now)


def _stale(enabled: bool, last: datetime | None, interval: float, timeout: float, now) -> bool:
    if not enabled or last is None:
        return False
    return (now - last).total_seconds() > _stale_after(interval, timeout)


class HealthCounts(TypedDict):
    status: str
    critical_down: bool
    stale: bool
    generated_at: str
    counts: dict[str, int]


def health_counts(tag: str | None = None) -> HealthCounts:
    """What anyone may know (a load balancer, a status script): the overall status, whether a
    critical check is down, whether the results are stale, and how many checks have each
    status. No name, kind or tag: ``?tag=`` narrows it to one service's checks."""
    now = timezone.now()
    counts: dict[str, int] = {}
    critical_down = stale = False
    # A load balancer asks every few seconds: one grouped query, a few rows whatever the number
    # of checks. A group's oldest result decides whether any of its checks is stale.
    groups = (
        _checks(tag)
        .values_list("status", "critical", "enabled", "interval", "timeout")
        .annotate(checks=Count("pk"), oldest=Min("last_checked_at"))
    )
    for status, critical, enabled, interval, timeout, number, oldest in groups:
        counts[status] = counts.get(status, 0) + number
        critical_down |= status == DOWN and critical
        stale |= _stale(enabled, oldest, interval, timeout, now)
    return {
        "status": overall_status(list(counts)),
        "critical_down": critical_down,
        "stale": stale,
        "generated_at": now.isoformat(),
        "counts": counts,
    }


def _checks(tag: str | None):
    checks = HealthCheck.objects.order_by()
    return checks.with_tag(tag) if tag else checks


def check_summary(check: HealthCheck | CheckRow, now: datetime | None = None) -> CheckSummary:
    """One check as JSON-ready data, from its stored state. No target: it may hold credentials
    and /health/ is public."""
    now = now or timezone.now()
    return {
        "name": check.name,
        "kind": check.kind,
        "status": check.status,
        "since": check.status_since.isoformat() if check.status_since else None,
        "flapping": check.flapping,
        "critical": check.critical,
        "tags": check.tag_list,
        "latency_ms": round(check.last_latency_ms, 2)
        if check.last_latency_ms is not None
        else None,
        "last_checked_at": check.last_checked_at.isoformat() if check.last_checked_at else None,
        "error_category": check.last_error_category or "",
        "error_message": check.last_error_message or "",
        "stale": is_stale(check, now),
        "stale_after_s": stale_after(check),
    }


def health_summary(tag: str | None = None) -> HealthSummary:
    """The document staff get from /health/: every check's summary (only those with ``tag``
    when given) with its uptime and latency (``history_figures``), and the overall status.
    A fixed number of queries whatever the number of checks: the checks, their figures
    (``history.summary_figures``), the runners."""
    now = timezone.now()
    rows = [row for (row,) in check_rows(_checks(tag).order_by("name"))]
    figures = history_figures([c.pk for c in rows] if tag else None, now)
    checks: list[HealthSummaryCheck] = [
        {**check_summary(c, now), **figures.get(c.pk, NO_HISTORY)} for c in rows
    ]
    statuses = [c["status"] for c in checks]
    return {
        "status": overall_status(statuses),
        "critical_down": any(c["status"] == DOWN and c["critical"] for c in checks),
        # Statuses as of their last results: true when any is older than it should be.
        "stale": any(c["stale"] for c in checks),
        "generated_at": now.isoformat(),
        "checks": checks,
        "runners": [runner_summary(r) for r in live_runners(now)],
    }


NO_HISTORY: HistoryFigures = {
    "uptime_24h": None,
    "uptime": {"24h": None, "7d": None, "30d": None, "90d": None},
    "latency_24h": {"p50": None, "p95": None, "p99": None},
}


def history_figures(
    check_ids: list[int] | None, now: datetime | None = None
) -> dict[int, HistoryFigures]:
    """Each check's uptime over 24 h / 7 d / 30 d / 90 d and its latency percentiles over 24 h,
    from the rollups (``history``), in one query. With ``check_ids`` every asked check has an
    entry; with None, every check with history (``NO_HISTORY`` stands for the others)."""
    figures = {}
    for check_id, found in summary_figures(check_ids, now).items():
        day = found["uptime"]["24h"]
        figures[check_id] = {
            "uptime_24h": None if day is None else round(day / 100, 6),
            "uptime": found["uptime"],
            "latency_24h": found["latency"],
        }
    return figures
