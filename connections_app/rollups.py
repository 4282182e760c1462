"""Result rollups: each check's results counted per hour and per day, so history is read from a
few rows per check, never from a scan of raw results.

A rollup row holds a check's result and failure counts for one UTC hour or day, the sum, least
and greatest latency of its successes, and how many successes fell in each of a fixed set of
log-scale latency buckets (``BOUNDS_MS``): p50/p95/p99 are read back from those counts
(``percentile``), to within a bucket's width.

Rows are written by ``add`` in the transaction that stores the results (``results._store``):
one upsert per check per period, adding the batch's counts to what the row holds, so two
runners may store results of the same hour at once. Only rows the batch really inserted are
counted: a batch stored twice counts once. ``rebuild`` makes them again from raw results in
SQL (the data migration, the benchmark's comparison). Hourly rows are kept
``ROLLUP_RETENTION_DAYS`` (``prune``), daily rows forever.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, models
from django.db.models import Count, Max, Min, Q, Sum
from django.db.models.functions import Trunc
from django.utils import timezone

from connections_app.db.array_literals import column_arrays, unnest_arrays
from connections_app.db.bound_cursor import server_bound_cursor
from connections_app.db.transactions import retry_transaction

HOUR = "hour"
DAY = "day"
PERIOD_CHOICES = [(HOUR, "Hour"), (DAY, "Day")]
PERIODS = {HOUR: timedelta(hours=1), DAY: timedelta(days=1)}
#: Uptime windows: key -> (the period whose rows make it, its length). "24h" is the hour
#: ``now - 24 h`` falls in and every hour after it; the others the same in days.
WINDOWS = {
    "24h": (HOUR, timedelta(hours=24)),
    "7d": (DAY, timedelta(days=7)),
    "30d": (DAY, timedelta(days=30)),
    "90d": (DAY, timedelta(days=90)),
}

#: Upper bounds (milliseconds) of the latency buckets, about 1.5x apart from 1 ms to 60 s;
#: one more bucket takes everything slower. Fixed forever: stored counts depend on them.
BOUNDS_MS = (
    1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 200, 300,
    500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000, 60000,
)  # fmt: skip
#: One column per bucket: ``le_00`` .. ``le_26`` (the last one unbounded).
BUCKET_COLUMNS = tuple(f"le_{i:02d}" for i in range(len(BOUNDS_MS) + 1))
DEFAULT_ROLLUP_RETENTION_DAYS = 400
#: Hourly rows deleted per statement when pruning: short statements, short locks.
PRUNE_CHUNK = 5000


class ResultRollup(models.Model):
    """A check's results in one UTC hour or day (``start`` is the period's first moment)."""

    health_check = models.ForeignKey(
        "connections_app.HealthCheck", on_delete=models.CASCADE, related_name="rollups"
    )
    period = models.CharField(max_length=4, choices=PERIOD_CHOICES)
    start = models.DateTimeField()
    results = models.PositiveIntegerField(default=0)
    failures = models.PositiveIntegerField(default=0)
    #: Successes with a latency: the count behind the sum and the buckets.
    latency_count = models.PositiveIntegerField(default=0)
    latency_sum = models.FloatField(default=0.0)
    latency_min = models.FloatField(null=True, blank=True)
    latency_max = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["health_check", "period", "start"]
        constraints = [
            # The upsert's conflict target; also a check's page: "this check's hours since t".
            models.UniqueConstraint(fields=["health_check", "period", "start"], name="rollup_once"),
        ]
        indexes = [
            # The summary of every check ("day rows since t") and pruning ("hours before t").
            models.Index(fields=["period", "start"], name="rollup_period_start_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.health_check_id} {self.period} {self.start:%Y-%m-%d %H:%M}"

    def bucket_counts(self) -> list[int]:
        return [getattr(self, column) for column in BUCKET_COLUMNS]


# Fixed columns rather than an array: the upsert adds them one by one in plain SQL, the same
# on SQLite and PostgreSQL, and a sum over rows is an ordinary SUM.
for _column in BUCKET_COLUMNS:
    models.PositiveIntegerField(default=0).contribute_to_class(ResultRollup, _column)


def bucket_of(latency_ms: float) -> int:
    """The index of the bucket a latency falls in (its upper bound included)."""
    return bisect_left(BOUNDS_MS, latency_ms)


def period_start(moment: datetime, period: str) -> datetime:
    """The first moment of the UTC hour or day ``moment`` is in."""
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if period == DAY else moment


def percentile(counts: list[int], q: float, low: float | None, high: float | None) -> float | None:
    """The ``q`` quantile (0..1) of latencies counted in ``counts`` (per bucket), interpolated
    linearly inside its bucket and kept within the least and greatest latency seen."""
    return percentiles(counts, (q,), low, high)[0]


def percentiles(
    counts: list[int], qs: tuple[float, ...], low: float | None, high: float | None
) -> list[float | None]:
    """``percentile`` of each of ``qs`` (ascending), in one pass over the buckets: a list of
    every check's figures asks for three of them per check."""
    total = sum(counts)
    if total == 0:
        return [None] * len(qs)
    found: list[float | None] = []
    ranks = iter(q * total for q in qs)
    rank = next(ranks)
    seen = 0
    for index, count in enumerate(counts):
        while count and seen + count >= rank:
            lower = BOUNDS_MS[index - 1] if index else 0.0
            upper = BOUNDS_MS[index] if index < len(BOUNDS_MS) else (high or lower)
            value = lower + (upper - lower) * max(rank - seen, 0) / count
            if low is not None:
                value = max(value, low)
            if high is not None:
                value = min(value, high)
            found.append(round(value, 2))
            rank = next(ranks, None)
            if rank is None:
                return found
        seen += count
    return found + [high] * (len(qs) - len(found))


@dataclass
class _Delta:
    results: int = 0
    failures: int = 0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_min: float | None = None
    latency_max: float | None = None
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKET_COLUMNS))

    def add(self, ok: bool, latency: float | None) -> None:
        self.results += 1
        if not ok:
            self.failures += 1
        elif latency is not None:
            # Successes only: a timeout's latency is the timeout, not the target's speed.
            self.latency_count += 1
            self.latency_sum += latency
            low, high = self.latency_min, self.latency_max
            self.latency_min = latency if low is None else min(low, latency)
            self.latency_max = latency if high is None else max(high, latency)
            self.buckets[bucket_of(latency)] += 1


_COLUMNS = (
    "health_check_id",
    "period",
    "start",
    "results",
    "failures",
    "latency_count",
    "latency_sum",
    "latency_min",
    "latency_max",
    *BUCKET_COLUMNS,
)
_ADDED = ("results", "failures", "latency_count", "latency_sum", *BUCKET_COLUMNS)


def add(rows: Iterable) -> int:
    """Add results just inserted (objects with ``health_check_id``, ``checked_at``, ``ok``,
    ``latency_ms``) to their checks' hourly and daily rows; the rows upserted.

    Call it inside the transaction that inserted them, with only the rows it inserted.
    """
    deltas: dict[tuple[int, str, datetime], _Delta] = {}
    for row in rows:
        for period in PERIODS:
            key = (row.health_check_id, period, period_start(row.checked_at, period))
            deltas.setdefault(key, _Delta()).add(row.ok, row.latency_ms)
    if not deltas:
        return 0
    adapt = connection.ops.adapt_datetimefield_value  # SQLite: naive UTC text
    rows = [_values(key, d, adapt) for key, d in sorted(deltas.items())]
    # Many rows a statement: one round trip for a whole batch, not one per check and period
    # (on PostgreSQL that was most of the time it took to store a result).
    with server_bound_cursor(connection) as cursor:
        if connection.vendor == "postgresql":
            # One array a column: the statement's text and plan are the same for any number of
            # rows, where a VALUES list of 36 parameters a row cost most of its time planning;
            # each array as its text (``array_literals``), bound by the server.
            types = _column_types()
            source = f"SELECT * FROM {unnest_arrays(types)}"
            cursor.execute(_upsert_sql(source=source), column_arrays(rows, types))
            return len(deltas)
        # SQLite, in-process: one row's upsert prepared once and run for every row; a VALUES
        # list of 36 parameters a row cost more to build and translate than to run.
        cursor.executemany(_upsert_sql(1), rows)
    return len(deltas)


def _column_types() -> list[str]:
    """The database type of each of ``_COLUMNS``."""
    fields = {f.column: f for f in ResultRollup._meta.concrete_fields}
    return [fields[c].cast_db_type(connection) for c in _COLUMNS]


def _values(key: tuple[int, str, datetime], delta: _Delta, adapt) -> list:
    check_id, period, start = key
    return [
        check_id,
        period,
        adapt(start),
        delta.results,
        delta.failures,
        delta.latency_count,
        delta.latency_sum,
        delta.latency_min,
        delta.latency_max,
        *delta.buckets,
    ]


def _upsert_sql(rows: int = 1, source: str | None = None) -> str:
    """The upsert of ``rows`` rows as a VALUES list, or of what ``source`` selects."""
    quote = connection.ops.quote_name
    table = quote(ResultRollup._meta.db_table)
    columns = ", ".join(quote(c) for c in _COLUMNS)
    added = [f"{quote(c)} = {table}.{quote(c)} + EXCLUDED.{quote(c)}" for c in _ADDED]
    # NULL-safe least and greatest: SQLite's MIN(a, b) is NULL when either is.
    low, high = quote("latency_min"), quote("latency_max")
    added.append(
        f"{low} = CASE WHEN {table}.{low} IS NULL OR EXCLUDED.{low} < {table}.{low} "
        f"THEN EXCLUDED.{low} ELSE {table}.{low} END"
    )
    added.append(
        f"{high} = CASE WHEN {table}.{high} IS NULL OR EXCLUDED.{high} > {table}.{high} "
        f"THEN EXCLUDED.{high} ELSE {table}.{high} END"
    )
    target = ", ".join(quote(c) for c in ("health_check_id", "period", "start"))
    row = f"({', '.join(['%s'] * len(_COLUMNS))})"
    source = source or f"VALUES {', '.join([row] * rows)}"
    return (
        f"INSERT INTO {table} ({columns}) {source} "
        f"ON CONFLICT ({target}) DO UPDATE SET {', '.join(added)}"
    )


def grouped_from_results(results: models.QuerySet, period: str) -> models.QuerySet:
    """``results`` (a CheckResult queryset) grouped by check and UTC ``period``, with every
    rollup figure computed in SQL: what ``rebuild`` inserts, and what the benchmark compares."""
    success = Q(ok=True, latency_ms__isnull=False)
    buckets = {}
    for index, column in enumerate(BUCKET_COLUMNS):
        inside = success
        if index < len(BOUNDS_MS):
            inside &= Q(latency_ms__lte=BOUNDS_MS[index])
        if index:
            inside &= Q(latency_ms__gt=BOUNDS_MS[index - 1])
        buckets[column] = Count("pk", filter=inside)
    return (
        results.order_by()
        .annotate(bucket_start=Trunc("checked_at", period, tzinfo=UTC))
        .values("health_check_id", "bucket_start")
        .annotate(
            n_results=Count("pk"),
            n_failures=Count("pk", filter=Q(ok=False)),
            n_latency=Count("pk", filter=success),
            sum_latency=Sum("latency_ms", filter=success, default=0.0),
            min_latency=Min("latency_ms", filter=success),
            max_latency=Max("latency_ms", filter=success),
            **buckets,
        )
        .values_list(
            "health_check_id",
            "bucket_start",
            "n_results",
            "n_failures",
            "n_latency",
            "sum_latency",
            "min_latency",
            "max_latency",
            *buckets,
        )
    )


def rebuild(result_model=None, rollup_model=None, using: str = "default") -> None:
    """Make every rollup row again from the stored raw results, in SQL: one
    ``INSERT ... SELECT ... GROUP BY`` per period (no raw row passes through Python).

    The models are parameters so the data migration can pass its historical ones.
    """
    from django.db import connections

    if result_model is None:
        from connections_app.models import CheckResult as result_model
    rollup_model = rollup_model or ResultRollup
    db = connections[using]
    quote = db.ops.quote_name
    table = quote(rollup_model._meta.db_table)
    columns = ", ".join(quote(c) for c in ("period", *_COLUMNS_BUT_PERIOD))

    # One transaction: a runner's upsert must not land between the delete and the insert.
    @retry_transaction(using=using)
    def replace() -> None:
        rollup_model.objects.using(using).all().delete()
        if rollup_model is ResultRollup:  # the live model: the totals made of rows replaced go
            from connections_app.closed_totals import ClosedTotals  # it imports this module

            ClosedTotals.objects.using(using).all().delete()
        for period in PERIODS:
            # In time order, as the runner writes them: a summary of every check reads one
            # period's rows, and they then sit on a few pages instead of one page each.
            select = grouped_from_results(result_model.objects.using(using).all(), period).order_by(
                "bucket_start", "health_check_id"
            )
            sql, params = select.query.sql_with_params()
            with db.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} ({columns}) SELECT %s, grouped.* FROM ({sql}) grouped",
                    (period, *params),
                )

    replace()


#: ``_COLUMNS`` in the order ``grouped_from_results`` gives them.
_COLUMNS_BUT_PERIOD = tuple(c for c in _COLUMNS if c != "period")


def prune(days: int | None = None, now: datetime | None = None) -> int:
    """Delete hourly rows older than ``ROLLUP_RETENTION_DAYS``, in chunks so no lock is held
    long; daily rows are kept forever. The rows deleted."""
    if days is None:
        days = getattr(settings, "ROLLUP_RETENTION_DAYS", DEFAULT_ROLLUP_RETENTION_DAYS)
    cutoff = (now or timezone.now()) - timedelta(days=days)
    old = ResultRollup.objects.filter(period=HOUR, start__lt=cutoff)
    deleted = 0
    for _ in range(1000):
        ids = list(old.values_list("pk", flat=True)[:PRUNE_CHUNK])
        if not ids:
            break
        deleted += ResultRollup.objects.filter(pk__in=ids).delete()[0]
    return deleted
