"""Running checks: scheduling, batched result writes, status changes, events.

Order of work for every batch (ARCHITECTURE.md): results are written to the database first, then
status changes are computed from what was written, then events are published. A browser that
misses an event rebuilds everything from the next snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connection
from django.db.models import F, Q
from django.utils import timezone

from connections_app.connection_manager import ConnectionManager
from connections_app.db.transactions import retry_transaction
from connections_app.error_handler import get_global_error_handler, report
from connections_app.error_stats import flush_error_stats
from connections_app.errors import DATABASE_TRANSIENT, is_retryable
from connections_app.events import announce, listening
from connections_app.models import CheckResult, HealthCheck
from connections_app.probes import ProbeResult, run_probe
from connections_app.summary import check_summary

logger = logging.getLogger(__name__)

#: The scheduler looks for new or changed checks at least this often (seconds).
MAX_IDLE = 1.0
#: Results are written when this many are waiting, or every FLUSH_INTERVAL seconds.
BATCH_SIZE = 200
FLUSH_INTERVAL = 1.0
#: Results kept in memory while the database is away; beyond, the oldest are dropped.
MAX_PENDING = 10_000
ERROR_STATS_INTERVAL = 10.0
PRUNE_INTERVAL = 3600.0


@dataclass
class Outcome:
    """One probe run: the check as it was run, what it found, and when."""

    check: HealthCheck
    result: ProbeResult
    checked_at: datetime = field(default_factory=timezone.now)
    status: str = ""

    def result_dict(self) -> dict:
        return {
            "checked_at": self.checked_at.isoformat(),
            "ok": self.result.ok,
            "latency_ms": self.result.latency_ms,
            "http_status": self.result.http_status,
            "error_category": self.result.error_category,
            "error_message": self.result.error_message,
        }


def _release_connection() -> None:
    """Drop a database connection that is too old or broken before the next unit of work."""
    if not connection.in_atomic_block:
        close_old_connections()


@retry_transaction
def _insert_results(rows: list[CheckResult]) -> None:
    """Insert the rows whose check still exists; the checks stay locked until commit, so a
    delete in the admin cannot slip in between and fail the whole batch."""
    ids = {row.health_check_id for row in rows}
    alive = set(
        HealthCheck.objects.select_for_update().filter(pk__in=ids).values_list("pk", flat=True)
    )
    # The unique key (check, checked_at) makes a retried batch idempotent.
    CheckResult.objects.bulk_create(
        [row for row in rows if row.health_check_id in alive], ignore_conflicts=True
    )


def write_outcomes(outcomes: list[Outcome]) -> dict[int, HealthCheck]:
    """Store the results, then read back each affected check with its derived status."""
    _release_connection()
    rows = [
        CheckResult(
            health_check_id=o.check.pk,
            checked_at=o.checked_at,
            ok=o.result.ok,
            latency_ms=o.result.latency_ms,
            http_status=o.result.http_status,
            error_category=o.result.error_category,
            error_message=o.result.error_message,
        )
        for o in outcomes
    ]
    _insert_results(rows)
    ids = {o.check.pk for o in outcomes}
    checks = HealthCheck.objects.filter(pk__in=ids).with_status().with_uptime()
    return {c.pk: c for c in checks}


class StatusTracker:
    """Remembers each check's last status, to tell a change from a repeat."""

    def __init__(self) -> None:
        self._known: dict[int, str] = {}

    def update(self, check: HealthCheck) -> tuple[str, str] | None:
        """(old, new) when the status changed since last seen, else None."""
        new = check.status
        old = self._known.get(check.pk)
        self._known[check.pk] = new
        if old is None or old == new:
            return None
        return old, new


class ResultWriter:
    """Collects outcomes, writes them in batches, then logs and publishes what changed."""

    def __init__(self) -> None:
        self._pending: list[Outcome] = []
        self.tracker = StatusTracker()
        self.written = 0
        self.dropped = 0

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> list[Outcome]:
        batch, self._pending = self._pending, []
        if not batch:
            return []
        try:
            checks = await sync_to_async(write_outcomes)(batch)
        except Exception as exc:
            report(exc, "results.store", connection.alias)
            self._keep_or_drop(batch, exc)
            return []
        self.written += len(batch)
        failed = sum(not o.result.ok for o in batch)
        logger.debug("stored %d results (%d failed)", len(batch), failed)
        await self._announce(batch, checks)
        return batch

    def _keep_or_drop(self, batch: list[Outcome], error: BaseException) -> None:
        """Keep a batch the database could not take for now (locked, unreachable) for the next
        flush, bounded so a long outage cannot grow memory; drop one it refused outright."""
        if not is_retryable(error, DATABASE_TRANSIENT):
            self.dropped += len(batch)
            return
        self._pending[:0] = batch
        overflow = len(self._pending) - MAX_PENDING
        if overflow > 0:
            del self._pending[:overflow]  # the oldest go first
            self.dropped += overflow

    async def _announce(self, batch: list[Outcome], checks: dict[int, HealthCheck]) -> None:
        for outcome in batch:
            check = checks.get(outcome.check.pk)
            if check is None:
                continue  # deleted while it ran
            outcome.status = check.status
            if not listening():
                continue
            data = {
                "check": check_summary(check),
                "result": outcome.result_dict(),
                "uptime_24h": check.uptime(),
            }
            await announce("check.result", data)
        for check in checks.values():
            change = self.tracker.update(check)
            if change:
                await self._announce_change(check, *change)

    async def _announce_change(self, check: HealthCheck, old: str, new: str) -> None:
        level = logging.WARNING if new in ("down", "degraded") else logging.INFO
        reason = f" ({check.last_error_category})" if check.last_error_category else ""
        logger.log(level, "check %s: %s -> %s%s", check.name, old, new, reason)
        data = {
            "name": check.name,
            "tags": check.tag_list,  # lets a tag-filtered dashboard skip what it does not show
            "from": old,
            "to": new,
            "at": timezone.now().isoformat(),
        }
        await announce("check.status", data)


class Monitor:
    """Runs checks concurrently (at most ``concurrency`` at once) and stores their results."""

    def __init__(self, manager: ConnectionManager, concurrency: int = 20) -> None:
        self.manager = manager
        self.semaphore = asyncio.Semaphore(concurrency)
        self.writer = ResultWriter()
        self._tasks: set[asyncio.Task] = set()

    async def run_check(
        self, check: HealthCheck, stop: asyncio.Event | None = None
    ) -> Outcome | None:
        """Run one check and queue its result; None when ``stop`` came before its turn."""
        async with self.semaphore:
            if stop is not None and stop.is_set():
                return None
            result = await run_probe(check, self.manager)
        outcome = Outcome(check=check, result=result)
        self.writer.add(outcome)
        return outcome

    async def run_once(
        self,
        checks: Iterable[HealthCheck],
        stop: asyncio.Event,
        abandon: asyncio.Event | None = None,
    ) -> list[Outcome]:
        """Every check once; the stored outcomes, in the order of ``checks``.

        After ``stop``, running probes end (each is bounded by its timeout) and the ones still
        waiting for their turn are skipped; after ``abandon``, the running ones are cancelled
        too. What finished is written either way.
        """
        checks = list(checks)
        probes = asyncio.gather(*(self.run_check(c, stop) for c in checks))
        abandoned = asyncio.ensure_future((abandon or asyncio.Event()).wait())
        try:
            await asyncio.wait({probes, abandoned}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            abandoned.cancel()
            probes.cancel()  # nothing to cancel when every probe has finished
            # Cancelled probes unwind (their sockets close) before the results are written.
            with contextlib.suppress(asyncio.CancelledError):
                await probes
        stored = await self.writer.flush()
        await _quietly(flush_error_stats, "error_stats.flush")
        order = {check.pk: position for position, check in enumerate(checks)}
        # No status: its check was deleted meanwhile.
        return sorted((o for o in stored if o.status), key=lambda o: order[o.check.pk])

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Each enabled check at its own interval until ``stop`` is set; then drain and flush."""
        flusher = asyncio.create_task(self._flush_loop(stop))
        try:
            await self._schedule_loop(stop)
        finally:
            if self._tasks:
                await asyncio.wait(self._tasks)
            await flusher
            await self.writer.flush()
            await _quietly(flush_error_stats, "error_stats.flush")

    async def _schedule_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                due = await sync_to_async(claim_due_checks)(timezone.now())
                wait = await sync_to_async(seconds_until_next_due)(timezone.now())
            except Exception as exc:
                report(exc, "checks.claim", connection.alias)
                due, wait = [], MAX_IDLE
            for check in due:
                task = asyncio.create_task(self.run_check(check, stop))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await _wait(stop, wait)

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        last_stats = last_prune = loop.time()
        while not stop.is_set():
            await _wait(stop, FLUSH_INTERVAL)
            await self.writer.flush()
            # Repeats counted in a window that has ended get their one summary line now, not
            # whenever the next error of the kind happens to come.
            get_global_error_handler().close_expired_windows()
            now = loop.time()
            if now - last_stats >= ERROR_STATS_INTERVAL:
                last_stats = now
                await _quietly(flush_error_stats, "error_stats.flush")
            if now - last_prune >= PRUNE_INTERVAL:
                last_prune = now
                await _quietly(prune_results, "results.prune")


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.01))
    except TimeoutError:
        pass


async def _quietly(func, operation: str) -> None:
    """Run housekeeping; a failure is reported and tried again on the next round."""
    try:
        await sync_to_async(func)()
    except Exception as exc:
        report(exc, operation, connection.alias)


def _due_filter(now: datetime) -> Q:
    return Q(next_due_at__isnull=True) | Q(next_due_at__lte=now)


def claim_due_checks(now: datetime, limit: int = 500) -> list[HealthCheck]:
    """The enabled checks that are due, each moved to its next due time in one transaction.

    Several runners may share one database: on PostgreSQL the rows are locked with SKIP LOCKED,
    so each due check goes to exactly one runner; SQLite's IMMEDIATE transactions serialise
    the runners instead.
    """
    _release_connection()
    return _claim(now, limit)


@retry_transaction
def _claim(now: datetime, limit: int) -> list[HealthCheck]:
    due = list(
        HealthCheck.objects.select_for_update(skip_locked=True)
        .filter(_due_filter(now), enabled=True)
        .order_by(F("next_due_at").asc(nulls_first=True))[:limit]
    )
    for check in due:
        check.next_due_at = now + timedelta(seconds=check.interval)
    HealthCheck.objects.bulk_update(due, ["next_due_at"])
    return due


def seconds_until_next_due(now: datetime) -> float:
    soonest = (
        HealthCheck.objects.filter(enabled=True, next_due_at__isnull=False)
        .order_by("next_due_at")
        .values_list("next_due_at", flat=True)
        .first()
    )
    if soonest is None:
        return MAX_IDLE
    return min(MAX_IDLE, max(0.0, (soonest - now).total_seconds()))


def prune_results(days: int | None = None) -> int:
    """Delete results older than the retention period, in chunks so no lock is held long."""
    days = settings.RESULT_RETENTION_DAYS if days is None else days
    cutoff = timezone.now() - timedelta(days=days)
    deleted = 0
    for _ in range(1000):
        ids = list(
            CheckResult.objects.filter(checked_at__lt=cutoff).values_list("pk", flat=True)[:5000]
        )
        if not ids:
            break
        deleted += CheckResult.objects.filter(pk__in=ids).delete()[0]
    return deleted
