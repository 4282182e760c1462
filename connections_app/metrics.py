"""``/metrics``: the stored state in the Prometheus text format, read at scrape time.

Nothing is counted in this process's memory: every figure is read from the database when the
scrape comes, so whichever server process answers, it reports what every runner stored
(their checks' state, their alerts, the error counts they flushed). Labels carry a check's
name and kind, never its target: a target may hold a password.

Other apps add their figures with ``add_source`` (``realtime`` its dashboard clients), so this
module imports none of them. A source is a function that returns metric families; it runs at
every scrape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import datetime

from django.db.models import Count, Min, Sum
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from connections_app.alerts.models import FAILED, PENDING, SENDING, SENT, Alert
from connections_app.history import latency_histogram
from connections_app.models import DEGRADED, STATUS_CHOICES, UP, ErrorStat, HealthCheck
from connections_app.runners import live_runners

PREFIX = "connection_health"
CHECK_LABELS = ["check", "kind"]
#: The error handler's operations for the database layer's retries and reconnects
#: (``connections_app.db.counters``): their ``ErrorStat`` rows are the counts of every process.
DB_OPERATIONS = {"db.retry": "retries", "db.reconnect": "reconnects"}

Source = Callable[[], Iterable[Metric]]
_sources: list[Source] = []


def add_source(source: Source) -> None:
    """Have ``source`` run at every scrape (once, however often it is added).

    The hook for figures another app keeps: ``realtime`` adds its dashboard clients."""
    if source not in _sources:
        _sources.append(source)


class StoredStateCollector(Collector):
    """Every figure of ``/metrics``, read from the database when ``collect`` runs."""

    def __init__(self, now: Callable[[], datetime] = timezone.now) -> None:
        self.now = now

    def collect(self) -> Iterable[Metric]:
        yield from check_metrics()
        yield latency_histograms()
        yield scheduling_lag(self.now())
        yield from runner_metrics(self.now())
        yield from error_metrics()
        yield from alert_metrics()
        yield from database_metrics()
        for source in list(_sources):
            yield from source()


def render() -> bytes:
    """The text of one scrape: a registry made for it, so no figure outlives the request."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoredStateCollector())
    return generate_latest(registry)


def check_metrics() -> Iterable[Metric]:
    """Per check: up, status (one series per status, 1 for the current one), last latency,
    last checked time, flapping and the certificate's days left."""
    up = _gauge(
        "check_up",
        "1 when the check's last results say its target works (up or "
        "degraded), whatever a pause or a maintenance window shows; else 0.",
    )
    status = GaugeMetricFamily(
        f"{PREFIX}_check_status",
        "1 for the check's current status, 0 for the others.",
        labels=[*CHECK_LABELS, "status"],
    )
    latency = _gauge("check_latency_seconds", "The last result's latency.")
    checked = _gauge("check_last_checked_timestamp_seconds", "When the last result was taken.")
    flapping = _gauge("check_flapping", "1 while the check changes status too often.")
    tls = _gauge(
        "check_tls_days_left",
        "Whole days the certificate had left at the last https result (negative: expired).",
    )
    rows = HealthCheck.objects.order_by("name").values_list(
        "name",
        "kind",
        "status",
        "health",
        "flapping",
        "last_latency_ms",
        "last_checked_at",
        "tls_days_left",
    )
    for name, kind, current, health, is_flapping, latency_ms, last, days in rows.iterator():
        labels = [name, kind]
        up.add_metric(labels, 1 if health in (UP, DEGRADED) else 0)
        for value, _label in STATUS_CHOICES:
            status.add_metric([*labels, value], 1 if value == current else 0)
        flapping.add_metric(labels, 1 if is_flapping else 0)
        if latency_ms is not None:
            latency.add_metric(labels, latency_ms / 1000)
        if last is not None:
            checked.add_metric(labels, last.timestamp())
        if days is not None:
            tls.add_metric(labels, days)
    return [up, status, latency, checked, flapping, tls]


def latency_histograms() -> Metric:
    """Per check, the latency of its successful results over all its history, from the daily
    rollups (kept forever, so the counts only grow), in seconds; one grouped query."""
    labels = {
        pk: [name, kind] for pk, name, kind in HealthCheck.objects.values_list("pk", "name", "kind")
    }
    family = HistogramMetricFamily(
        f"{PREFIX}_check_latency_histogram_seconds",
        "Latency of the check's successful results (all its history, from the daily rollups).",
        labels=CHECK_LABELS,
    )
    # Every rollup's check exists (they go with it), so no list of ids to send.
    for check_id, histogram in latency_histogram(None).items():
        buckets = [
            ("+Inf" if math.isinf(bound) else f"{bound / 1000:g}", count)
            for bound, count in histogram["buckets"]
        ]
        if check_id in labels:  # not deleted between the two reads
            family.add_metric(labels[check_id], buckets, histogram["sum_ms"] / 1000)
    return family


def scheduling_lag(now: datetime) -> Metric:
    """How long the most overdue enabled check has waited past its due time: 0 while the
    runners keep up, growing while none runs. Read from ``next_due_at``, which a runner moves
    on when it claims a check, so it covers every runner sharing the database."""
    oldest = HealthCheck.objects.filter(enabled=True, next_due_at__lte=now).aggregate(
        oldest=Min("next_due_at")
    )["oldest"]
    lag = GaugeMetricFamily(
        f"{PREFIX}_scheduling_lag_seconds",
        "Seconds the most overdue enabled check has waited past its due time (0: none).",
    )
    lag.add_metric([], 0.0 if oldest is None else (now - oldest).total_seconds())
    return lag


#: A runner's figures as ``Runner`` rows hold them: (metric, row field, help, scale).
_PERIOD = "over the runner's last report period"
RUNNER_GAUGES = (
    ("runner_lag_p50_seconds", "lag_p50_ms", f"Median scheduling lag {_PERIOD}.", 1e-3),
    ("runner_lag_p99_seconds", "lag_p99_ms", f"p99 of the scheduling lag {_PERIOD}.", 1e-3),
    ("runner_lag_max_seconds", "lag_max_ms", f"Largest scheduling lag {_PERIOD}.", 1e-3),
    ("runner_probes_running", "probes_running", "Probes running or waiting for a slot.", 1),
    ("runner_probe_slots", "probe_slots", "Probes the runner may run at once.", 1),
    ("runner_results_pending", "results_pending", "Results waiting for the database.", 1),
)
RUNNER_COUNTERS = (
    ("runner_runs_skipped", "runs_skipped", "Runs not started: the last one was still going."),
    ("runner_runs_missed", "runs_missed", "Runs never made up for: overdue by an interval."),
    ("runner_results_stored", "results_stored", "Results the runner stored."),
    ("runner_results_dropped", "results_dropped", "Results lost: the database was away too long."),
)


def runner_metrics(now: datetime) -> Iterable[Metric]:
    """Each live runner's own figures, from the row it writes every few seconds: whichever
    process serves ``/metrics`` reports every runner (label ``runner``: host:pid)."""
    gauges = [
        (GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=["runner"]), field, scale)
        for name, field, doc, scale in RUNNER_GAUGES
    ]
    counters = [
        (CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["runner"]), field)
        for name, field, doc in RUNNER_COUNTERS
    ]
    for runner in live_runners(now):
        for family, field, scale in gauges:
            value = getattr(runner, field)
            if value is not None:
                family.add_metric([runner.name], value * scale)
        for family, field in counters:
            family.add_metric([runner.name], getattr(runner, field))
    return [family for family, *_ in gauges] + [family for family, _ in counters]


def error_metrics() -> Iterable[Metric]:
    errors = CounterMetricFamily(
        f"{PREFIX}_errors",
        "Errors reported by every process, by category, as flushed to the error statistics.",
        labels=["category"],
    )
    rows = ErrorStat.objects.order_by("category").values("category").annotate(n=Sum("count"))
    for row in rows:
        errors.add_metric([row["category"]], row["n"])
    return [errors]


def alert_metrics() -> Iterable[Metric]:
    """Alerts sent and failed (finished, so counters while their rows are kept) and those
    still waiting or being sent (gauges)."""
    counts = dict(
        Alert.objects.order_by().values("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    done = CounterMetricFamily(
        f"{PREFIX}_alerts", "Alerts finished, by outcome: sent or failed.", labels=["status"]
    )
    waiting = GaugeMetricFamily(
        f"{PREFIX}_alerts_queued", "Alerts not finished: pending or sending.", labels=["status"]
    )
    for value in (SENT, FAILED):
        done.add_metric([value], counts.get(value, 0))
    for value in (PENDING, SENDING):
        waiting.add_metric([value], counts.get(value, 0))
    return [done, waiting]


def database_metrics() -> Iterable[Metric]:
    """Database retries and reconnects of every process, by database alias: each process's
    counts reach ``ErrorStat`` at its next flush (a runner's housekeeping, a server's
    heartbeat), so a figure may lag by one of those."""
    families = {
        kind: CounterMetricFamily(
            f"{PREFIX}_db_{kind}",
            f"Database {kind} of every process, as flushed to the error statistics.",
            labels=["database"],
        )
        for kind in DB_OPERATIONS.values()
    }
    rows = (
        ErrorStat.objects.filter(operation__in=DB_OPERATIONS)
        .order_by("endpoint")
        .values("operation", "endpoint")
        .annotate(n=Sum("count"))
    )
    for row in rows:
        families[DB_OPERATIONS[row["operation"]]].add_metric([row["endpoint"]], row["n"])
    return list(families.values())


def _gauge(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, labels=CHECK_LABELS)
