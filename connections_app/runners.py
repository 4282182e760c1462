"""What a runner says of itself: its scheduling lag and counts, in its ``Runner`` row.

The lag of a run is when its probe started minus when it was due. A runner that cannot keep up
shows it here first (the admin's runners list, staff ``/health/``, ``/metrics``), long before
results go stale.

A runner is *live* while it reports (every ``REPORT_INTERVAL``), *stopped* once it said so on a
clean stop, and *gone* when it missed ``MISSED_REPORTS`` reports without saying it stopped
(killed, or its host is): ``/health/`` and ``/metrics`` show live runners only; the admin
lists every row with its state and when it was last seen. Rows not seen for ``FORGET_AFTER``
are deleted by the reports of the runners still running.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils import timezone

from connections_app.models import Runner

#: Lags kept between two reports: enough for a p99 at 1,000 runs a second over 10 s.
MAX_LAGS = 10_000
#: How often a runner writes its row (seconds; ``monitor.Housekeeping``).
REPORT_INTERVAL = 5.0
#: A runner that missed this many reports in a row is gone.
MISSED_REPORTS = 3
#: Seen at t, its reports were due at t + 5, t + 10 and t + 15 s; one interval more for the
#: housekeeping's own period (a report comes 5 to 6 s after the last): 20 s.
GONE_AFTER = timedelta(seconds=REPORT_INTERVAL * (MISSED_REPORTS + 1))
#: Rows of runners not seen for this long (gone or stopped) are deleted: a day of evidence of
#: a runner that died, then no row per restart forever.
FORGET_AFTER = timedelta(days=1)

LIVE, STOPPED, GONE = "live", "stopped", "gone"


def runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def percentile(ordered: list[float], share: float) -> float | None:
    """The nearest-rank percentile of an ascending list; None when empty."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class RunnerStats:
    """Counted on the event loop (no locks needed), written by ``report`` in a thread."""

    tags: tuple[str, ...] = ()
    name: str = field(default_factory=runner_name)
    started_at: datetime = field(default_factory=timezone.now)
    lags_ms: deque[float] = field(default_factory=lambda: deque(maxlen=MAX_LAGS))
    runs: int = 0
    runs_skipped: int = 0
    runs_missed: int = 0

    def started(self, due: datetime | None, at: datetime) -> None:
        """A probe started at ``at``; it was due at ``due`` (None: a first run, never late)."""
        self.runs += 1
        if due is not None:
            self.lags_ms.append(max(0.0, (at - due).total_seconds() * 1000))

    def take_lags(self) -> dict[str, float | None]:
        """The lag percentiles since the last call, and a fresh window."""
        ordered = sorted(self.lags_ms)
        self.lags_ms.clear()
        return {
            "lag_p50_ms": percentile(ordered, 0.50),
            "lag_p95_ms": percentile(ordered, 0.95),
            "lag_p99_ms": percentile(ordered, 0.99),
            "lag_max_ms": ordered[-1] if ordered else None,
        }


def report(
    stats: RunnerStats, figures: dict, stopped: bool = False, now: datetime | None = None
) -> None:
    """Write the runner's row (``figures``: the counts the monitor holds) and forget runners
    not seen for ``FORGET_AFTER``."""
    now = now or timezone.now()
    Runner.objects.update_or_create(
        name=stats.name,
        defaults={
            "tags": " ".join(stats.tags),
            "started_at": stats.started_at,
            "seen_at": now,
            "stopped_at": now if stopped else None,
            "runs": stats.runs,
            "runs_skipped": stats.runs_skipped,
            "runs_missed": stats.runs_missed,
            **figures,
        },
    )
    Runner.objects.filter(seen_at__lt=now - FORGET_AFTER).delete()


def live_runners(now: datetime | None = None) -> list[Runner]:
    """Runners seen within ``GONE_AFTER`` that have not stopped."""
    now = now or timezone.now()
    return list(Runner.objects.filter(seen_at__gte=now - GONE_AFTER, stopped_at=None))


def runner_state(runner: Runner, now: datetime | None = None) -> str:
    """``LIVE``, ``STOPPED`` (a clean stop) or ``GONE`` (no report for ``GONE_AFTER``): the
    same rule as ``live_runners``, for one row."""
    if runner.stopped_at is not None:
        return STOPPED
    now = now or timezone.now()
    return LIVE if runner.seen_at >= now - GONE_AFTER else GONE


def runner_summary(runner: Runner) -> dict:
    """A runner in ``/health/``'s staff document."""
    return {
        "name": runner.name,
        "tags": runner.tags.split(),
        "seen_at": runner.seen_at.isoformat(),
        "probe_slots": runner.probe_slots,
        "probes_running": runner.probes_running,
        "lag_p50_ms": runner.lag_p50_ms,
        "lag_p95_ms": runner.lag_p95_ms,
        "lag_p99_ms": runner.lag_p99_ms,
        "lag_max_ms": runner.lag_max_ms,
        "runs_skipped": runner.runs_skipped,
        "runs_missed": runner.runs_missed,
        "results_pending": runner.results_pending,
        "results_dropped": runner.results_dropped,
    }
