"""The one place history figures come from: uptime over 24 h / 7 d / 30 d / 90 d, latency
percentiles, daily bars, hourly series and the latency histogram, each a grouped query on the
rollups (``rollups.ResultRollup``), never a scan of raw results.

The rollups are written in the transaction that stores the results, so the current hour's and
today's rows are already complete up to the last stored batch: no raw result needs reading.

Windows are whole UTC periods: "24h" is the hour ``now - 24 h`` falls in and every hour after
it (so between 24 and 25 hours of results), "7d", "30d" and "90d" the same in days. Uptime is
the share of successful results in percent; None for a check with no result in the window.
Latency figures are of successes only, in milliseconds, read back from the bucket counts.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Max, Min, Q, QuerySet, Sum
from django.utils import timezone

from connections_app import closed_totals
from connections_app.rollups import (
    BOUNDS_MS,
    BUCKET_COLUMNS,
    DAY,
    HOUR,
    PERIODS,
    WINDOWS,
    ResultRollup,
    percentile,
    percentiles,
    period_start,
)

QUANTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}
#: Percentiles over a span up to this long are read from hourly rows, longer ones from days.
HOURLY_UP_TO = timedelta(days=2)


def _rows(check_ids: Iterable[int] | None) -> QuerySet:
    rows = ResultRollup.objects.order_by()
    if check_ids is not None:
        rows = rows.filter(health_check_id__in=list(check_ids))
    return rows


def _window_start(now: datetime, period: str, length: timedelta) -> datetime:
    return period_start(now - length, period)


def _uptime(results: int | None, failures: int | None) -> float | None:
    if not results:
        return None
    return round(100.0 * (results - (failures or 0)) / results, 4)


def _windows(now: datetime) -> tuple[Q, dict]:
    """The rows every window in ``WINDOWS`` needs at ``now``, and each window's sums."""
    starts = {key: (p, _window_start(now, p, length)) for key, (p, length) in WINDOWS.items()}
    oldest = {p: min(s for q, s in starts.values() if q == p) for p in PERIODS}
    rows = Q(period=HOUR, start__gte=oldest[HOUR]) | Q(period=DAY, start__gte=oldest[DAY])
    sums = {}
    for key, (period, start) in starts.items():
        inside = Q(period=period, start__gte=start)
        sums[f"r{key}"] = Sum("results", filter=inside)
        sums[f"f{key}"] = Sum("failures", filter=inside)
    return rows, sums


def _uptimes(row: dict) -> dict[str, float | None]:
    return {key: _uptime(row[f"r{key}"], row[f"f{key}"]) for key in WINDOWS}


def uptime_windows(
    check_ids: Iterable[int] | None, now: datetime | None = None
) -> dict[int, dict[str, float | None]]:
    """Each check's uptime (percent) over every window in ``WINDOWS``, in one query; checks
    with no rollup at all are left out. ``check_ids`` None: every check."""
    now = now or timezone.now()
    rows, sums = _windows(now)
    grouped = _rows(check_ids).filter(rows, start__lte=now).values("health_check_id")
    return {row["health_check_id"]: _uptimes(row) for row in grouped.annotate(**sums)}


def _bucket_sums() -> dict:
    return {column: Sum(column) for column in BUCKET_COLUMNS}


def _quantiles(row: dict) -> dict[str, float | None]:
    counts = [row[column] or 0 for column in BUCKET_COLUMNS]
    return dict(zip(QUANTILES, percentiles(counts, _QS, row["low"], row["high"]), strict=True))


def latency_percentiles(
    check_ids: Iterable[int] | None, since: datetime, now: datetime | None = None
) -> dict[int, dict[str, float | None]]:
    """Each check's p50/p95/p99 latency (ms) of its successes since ``since`` (widened to
    whole hours, or whole days beyond ``HOURLY_UP_TO``), in one query."""
    now = now or timezone.now()
    period = HOUR if now - since <= HOURLY_UP_TO else DAY
    grouped = (
        _rows(check_ids)
        .filter(period=period, start__gte=period_start(since, period), start__lte=now)
        .values("health_check_id")
        .annotate(low=Min("latency_min"), high=Max("latency_max"), **_bucket_sums())
    )
    return {row["health_check_id"]: _quantiles(row) for row in grouped}


def daily_bars(
    check_ids: Iterable[int] | None, days: int = 90, now: datetime | None = None
) -> dict[int, list[dict]]:
    """Each check's last ``days`` UTC days, oldest first, today last: ``{"day", "results",
    "failures", "uptime"}`` (a day without results: 0, 0, None). Every check of
    ``check_ids``; with None, only checks with a row."""
    now = now or timezone.now()
    today = period_start(now, DAY)
    first = today - timedelta(days=days - 1)
    rows = (
        _rows(check_ids)
        .filter(period=DAY, start__gte=first, start__lte=now)
        .values_list("health_check_id", "start", "results", "failures")
    )
    found: dict[int, dict[datetime, tuple[int, int]]] = {pk: {} for pk in check_ids or ()}
    for check_id, start, results, failures in rows:
        found.setdefault(check_id, {})[period_start(start, DAY)] = (results, failures)
    bars = {}
    for check_id, by_day in found.items():
        bars[check_id] = []
        for offset in range(days):
            day = first + timedelta(days=offset)
            results, failures = by_day.get(day, (0, 0))
            bars[check_id].append(
                {
                    "day": day.date().isoformat(),
                    "results": results,
                    "failures": failures,
                    "uptime": _uptime(results, failures),
                }
            )
    return bars


def latency_series(check_id: int, since: datetime, now: datetime | None = None) -> list[dict]:
    """One check's hours since ``since``, oldest first, each ``{"t"`` (the hour's start, Unix
    seconds), ``"p50"``, ``"p95"``, ``"avg"``, ``"max"``, ``"uptime"``, ``"results"``,
    ``"failures"}``. Hours without results are absent: a gap, not a zero."""
    now = now or timezone.now()
    rows = ResultRollup.objects.filter(
        health_check_id=check_id,
        period=HOUR,
        start__gte=period_start(since, HOUR),
        start__lte=now,
    ).order_by("start")
    points = []
    for row in rows:
        counts = row.bucket_counts()
        low, high = row.latency_min, row.latency_max
        points.append(
            {
                "t": int(row.start.timestamp()),
                "p50": percentile(counts, 0.50, low, high),
                "p95": percentile(counts, 0.95, low, high),
                "avg": round(row.latency_sum / row.latency_count, 2) if row.latency_count else None,
                "max": high,
                "uptime": _uptime(row.results, row.failures),
                "results": row.results,
                "failures": row.failures,
            }
        )
    return points


def latency_histogram(check_ids: Iterable[int] | None) -> dict[int, dict]:
    """Each check's latency histogram over all its history (the daily rows, kept forever), as
    Prometheus wants it: ``{"buckets": [(upper bound in ms, cumulative count), ...,
    (inf, count)], "sum_ms", "count"}``. Counts only grow, until the check is deleted."""
    grouped = (
        _rows(check_ids)
        .filter(period=DAY)
        .values("health_check_id")
        .annotate(total=Sum("latency_sum"), count=Sum("latency_count"), **_bucket_sums())
    )
    histograms = {}
    for row in grouped:
        cumulative, buckets = 0, []
        for bound, column in zip((*BOUNDS_MS, float("inf")), BUCKET_COLUMNS, strict=True):
            cumulative += row[column] or 0
            buckets.append((float(bound), cumulative))
        histograms[row["health_check_id"]] = {
            "buckets": buckets,
            "sum_ms": row["total"] or 0.0,
            "count": row["count"] or 0,
        }
    return histograms


def summary_figures(
    check_ids: Iterable[int] | None, now: datetime | None = None
) -> dict[int, dict]:
    """What lists show beside each check: ``{"uptime": uptime over every window in
    ``WINDOWS``, "latency": p50/p95/p99 over the last 24 h}``, the same figures as
    ``uptime_windows`` and ``latency_percentiles``. Read from one row per check: the totals
    of the periods that have ended (``closed_totals``) with the current hour's and today's
    rollups added; checks without totals for this hour are summed from their rollups. Every
    asked check has an entry; with None, every check."""
    hour = period_start(now or timezone.now(), HOUR)
    ids = None if check_ids is None else list(check_ids)
    sums = closed_totals.whole(hour, ids)
    wanted = ids if ids is not None else _every_check_id()
    missing = [pk for pk in wanted if pk not in sums]
    if missing:
        everyone = ids is None and len(missing) == len(wanted)
        sums |= closed_totals.closed_sums(hour, None if everyone else missing, open_periods=True)
    empty = closed_totals.Sums()
    return {pk: _figures(sums.get(pk, empty)) for pk in wanted}


def _every_check_id() -> list[int]:
    return list(ResultRollup.health_check.field.related_model.objects.values_list("pk", flat=True))


#: Each window: its key, where its results and failures are in ``Sums.counts``.
_WINDOW_AT = [(key, 2 * i, 2 * i + 1) for i, key in enumerate(WINDOWS)]
_QS = tuple(QUANTILES.values())


def _figures(sums: closed_totals.Sums) -> dict:
    counts = sums.counts
    uptime = {
        key: _uptime(counts[results], counts[failures]) for key, results, failures in _WINDOW_AT
    }
    latency = dict(zip(QUANTILES, percentiles(sums.buckets, _QS, sums.low, sums.high), strict=True))
    return {"uptime": uptime, "latency": latency}
