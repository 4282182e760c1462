"""Each check's rollup sums over the periods that have ended, made once an hour, so the figures
beside every check (``history.summary_figures``) read three rows per check (these, the current
hour's rollup and today's) instead of every hour of a day and every day of 90.

A ``ClosedTotals`` row made for hour H sums the check's hourly rollups of the 24 hours before H
and its daily rollups of the 7, 30 and 90 days before H's day: exactly the parts of
``history.WINDOWS`` that only a result older than H can change.

- The runner's housekeeping makes the rows for the current hour (``refresh``), each chunk of
  checks in a transaction that holds their rows, as storing results does: a result being stored
  meanwhile is either already summed or stored after the totals exist.
- A result stored into an hour that has ended (the runner's buffer written after an outage; a
  probe that began before the hour turned) deletes its check's totals in the transaction that
  stores it (``forget_late``); the next refresh makes them again.
- A reader that finds no totals for the current hour sums those checks itself
  (``closed_sums``), so the figures are never wrong without a runner, only slower.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.db import connection, models
from django.db.models import Max, Min, Q, Sum
from django.utils import timezone

from connections_app.db.transactions import retry_transaction
from connections_app.rollups import (
    BUCKET_COLUMNS,
    DAY,
    HOUR,
    WINDOWS,
    ResultRollup,
    period_start,
)

#: Checks summed and written per transaction by ``refresh``.
REFRESH_CHUNK = 1000


class ClosedTotals(models.Model):
    """A check's rollup sums over the periods ended before ``hour`` (see the module)."""

    health_check = models.OneToOneField(
        "connections_app.HealthCheck",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="closed_totals",
    )
    hour = models.DateTimeField()
    #: Of the 24 hours' successes: the least and greatest latency (with the bucket columns).
    latency_min = models.FloatField(null=True, blank=True)
    latency_max = models.FloatField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.health_check_id} before {self.hour:%Y-%m-%d %H:%M}"


for _key in WINDOWS:
    models.PositiveBigIntegerField(default=0).contribute_to_class(ClosedTotals, f"results_{_key}")
    models.PositiveBigIntegerField(default=0).contribute_to_class(ClosedTotals, f"failures_{_key}")
for _column in BUCKET_COLUMNS:
    models.PositiveBigIntegerField(default=0).contribute_to_class(ClosedTotals, _column)

COUNT_COLUMNS = tuple(f"{kind}_{key}" for key in WINDOWS for kind in ("results", "failures"))
#: What a ``Sums`` is made of, in order: the counts, then low, high and the buckets.
SUM_COLUMNS = (*COUNT_COLUMNS, "latency_min", "latency_max", *BUCKET_COLUMNS)


@dataclass(slots=True)
class Sums:
    """Results and failures per window (in ``COUNT_COLUMNS`` order), and the latency of the
    24 h part's successes: the least, the greatest, the bucket counts."""

    counts: tuple[int, ...] = (0,) * len(COUNT_COLUMNS)
    low: float | None = None
    high: float | None = None
    buckets: tuple[int, ...] = (0,) * len(BUCKET_COLUMNS)

    @classmethod
    def of_row(cls, values: tuple) -> Sums:
        """From values in ``SUM_COLUMNS`` order, as stored (no NULL count)."""
        counted = len(COUNT_COLUMNS)
        return cls(values[:counted], values[counted], values[counted + 1], values[counted + 2 :])

    @classmethod
    def of_sums(cls, values: tuple) -> Sums:
        """From SQL sums in ``SUM_COLUMNS`` order: a count summed over no row is NULL, here 0."""
        counted = len(COUNT_COLUMNS)
        counts = tuple(v or 0 for v in values[:counted])
        buckets = tuple(v or 0 for v in values[counted + 2 :])
        return cls(counts, values[counted], values[counted + 1], buckets)


def whole(hour: datetime, check_ids: list[int] | None) -> dict[int, Sums]:
    """Each window's whole sums at ``hour``: the stored totals with the periods still open
    added (this hour's rollup to the 24 h part, today's to the days), in one query, the
    database doing the additions. Checks without totals for ``hour`` are left out."""
    adapt = connection.ops.adapt_datetimefield_value
    params = [HOUR, adapt(hour), DAY, adapt(period_start(hour, DAY)), adapt(hour)]
    sql = _whole_sql()
    if check_ids is not None:
        if not check_ids:
            return {}
        check = connection.ops.quote_name("health_check_id")
        sql += f" AND t.{check} IN ({', '.join(['%s'] * len(check_ids))})"
        params += check_ids
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {row[0]: Sums.of_row(row[1:]) for row in cursor.fetchall()}


@cache
def _whole_sql() -> str:
    q = connection.ops.quote_name
    check, open_of = q("health_check_id"), {HOUR: "h", DAY: "d"}
    columns = [f"t.{check}"]
    for key, (period, _) in WINDOWS.items():
        for kind in ("results", "failures"):
            columns.append(f"t.{q(f'{kind}_{key}')} + COALESCE({open_of[period]}.{q(kind)}, 0)")
    # The less (greater) of two latencies where either may be NULL: a comparison with NULL is
    # not true, so the other one is taken.
    low, high = q("latency_min"), q("latency_max")
    columns.append(f"CASE WHEN h.{low} IS NULL OR t.{low} < h.{low} THEN t.{low} ELSE h.{low} END")
    columns.append(
        f"CASE WHEN h.{high} IS NULL OR t.{high} > h.{high} THEN t.{high} ELSE h.{high} END"
    )
    columns += [f"t.{q(c)} + COALESCE(h.{q(c)}, 0)" for c in BUCKET_COLUMNS]
    joins = [
        f"LEFT JOIN {q(ResultRollup._meta.db_table)} {alias} ON {alias}.{check} = t.{check}"
        f" AND {alias}.{q('period')} = %s AND {alias}.{q('start')} = %s"
        for alias in ("h", "d")
    ]
    return (
        f"SELECT {', '.join(columns)} FROM {q(ClosedTotals._meta.db_table)} t {' '.join(joins)}"
        f" WHERE t.{q('hour')} = %s"
    )


def closed_sums(
    hour: datetime, check_ids: Iterable[int] | None, open_periods: bool = False
) -> dict[int, Sums]:
    """The totals for ``hour`` summed from the rollups, in one grouped query; checks without a
    rollup row in the windows are left out. ``check_ids`` None: every check. With
    ``open_periods`` the periods still open at ``hour`` are summed too, as ``whole`` adds
    them to stored totals."""
    windows = {}
    for key, (period, length) in WINDOWS.items():
        start = period_start(hour, period)  # the period still open at ``hour``
        end = Q(start__lte=start) if open_periods else Q(start__lt=start)
        windows[key] = Q(period=period, start__gte=start - length) & end
    hours = windows["24h"]
    sums = {}
    for key, inside in windows.items():
        sums[f"results_{key}"] = Sum("results", filter=inside)
        sums[f"failures_{key}"] = Sum("failures", filter=inside)
    sums["low"] = Min("latency_min", filter=hours)
    sums["high"] = Max("latency_max", filter=hours)
    sums |= {f"sum_{column}": Sum(column, filter=hours) for column in BUCKET_COLUMNS}
    rows = ResultRollup.objects.order_by().filter(hours | windows["90d"])  # the longest of each
    if check_ids is not None:
        rows = rows.filter(health_check_id__in=list(check_ids))
    grouped = rows.values("health_check_id").annotate(**sums).values_list("health_check_id", *sums)
    return {row[0]: Sums.of_sums(row[1:]) for row in grouped}


def refresh(now: datetime | None = None, chunk: int = REFRESH_CHUNK) -> int:
    """Make the totals for the current hour of every check that has none; the checks done."""
    hour = period_start(now or timezone.now(), HOUR)
    done = set(ClosedTotals.objects.filter(hour=hour).values_list("pk", flat=True))
    missing = [pk for pk in _checks().values_list("pk", flat=True) if pk not in done]
    for first in range(0, len(missing), chunk):
        _make(hour, missing[first : first + chunk])
    return len(missing)


@retry_transaction
def _make(hour: datetime, check_ids: list[int]) -> None:
    # Held as storing results holds them (``results._store``): a result is either stored
    # before these sums are read, or after they are written (and then ``forget_late`` drops
    # them if it belongs to an hour they cover).
    held = list(_checks().select_for_update().filter(pk__in=check_ids).values_list("pk", flat=True))
    sums = closed_sums(hour, held)
    rows = [_row(pk, hour, sums.get(pk) or Sums()) for pk in held]
    ClosedTotals.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["health_check"],
        update_fields=["hour", *SUM_COLUMNS],
    )


def _checks() -> models.QuerySet:
    """Every check (the model is the one the totals belong to: no import of models here,
    which imports this module)."""
    return ClosedTotals.health_check.field.related_model.objects.all()


def _row(check_id: int, hour: datetime, sums: Sums) -> ClosedTotals:
    values = dict(zip(COUNT_COLUMNS, sums.counts, strict=True))
    values |= {"latency_min": sums.low, "latency_max": sums.high}
    values |= dict(zip(BUCKET_COLUMNS, sums.buckets, strict=True))
    return ClosedTotals(health_check_id=check_id, hour=hour, **values)


def forget_late(rows: Iterable, now: datetime | None = None) -> int:
    """Delete the totals of the checks of ``rows`` (just stored: ``health_check_id``,
    ``checked_at``) that fall in an hour already ended; call it in the storing transaction."""
    hour = period_start(now or timezone.now(), HOUR)
    late = {row.health_check_id for row in rows if row.checked_at < hour}
    if not late:
        return 0
    deleted, _ = ClosedTotals.objects.filter(health_check_id__in=late).delete()
    return deleted
