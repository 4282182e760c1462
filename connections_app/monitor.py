"""Running checks: scheduling, batched result writes, events.

Order of work for every batch: the results, the state they cause and its ``StateChange`` rows
are written in one transaction (``results.store_outcomes``); after the commit, events are
announced from what was stored, never from memory. A browser that misses an event rebuilds
everything from the next snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections
from django.db.models import F, Q
from django.utils import timezone

from connections_app import closed_totals, rollups
from connections_app.cli import counted
from connections_app.connection_manager import ConnectionManager
from connections_app.db.fail_fast import fail_fast
from connections_app.db.loop_connection import close_stale_connection
from connections_app.db.transactions import retry_transaction
from connections_app.error_handler import get_global_error_handler, report
from connections_app.error_stats import flush_error_stats
from connections_app.errors import DATABASE_TRANSIENT, classify, is_retryable
from connections_app.events import announce, announce_checks_changed, listening
from connections_app.models import (
    DEGRADED,
    DOWN,
    KIND_PUSH,
    CheckResult,
    HealthCheck,
    StateChange,
)
from connections_app.probe_slots import ProbeSlots, default_total, target_key
from connections_app.probes import run_probe
from connections_app.push import deadline, silence
from connections_app.redaction import CLEAN, bare_urls
from connections_app.results import (
    Outcome,
    Stored,
    save_fields,
    store_outcomes,
)
from connections_app.row_instances import instances, loaded_fields
from connections_app.runners import REPORT_INTERVAL, RunnerStats
from connections_app.runners import report as report_runner
from connections_app.state import STATE_FIELDS, apply_maintenance
from connections_app.summary import HistoryFigures, check_summary, history_figures
from connections_app.ticks import START_TICK, sleep_to_tick

logger = logging.getLogger(__name__)

#: The scheduler looks for new or changed checks at least this often (seconds).
MAX_IDLE = 1.0
#: ... and no sooner than this after a claim: due times are spread, so claiming at each one
#: would be a transaction per check. Each claim takes the checks due within ``CLAIM_AHEAD``
#: too, and their probes wait for their own due times (on ``START_TICK``): claims come every
#: ``MIN_IDLE`` at most and add no lag. Each claim and its next-due query cost the same
#: whatever they take: two a second cost about half of four (7 against 11 ms of CPU a second
#: on SQLite at 100 checks/s).
MIN_IDLE = 0.5
CLAIM_AHEAD = 1.0
#: Results are written every FLUSH_INTERVAL seconds, all that are waiting in one transaction.
FLUSH_INTERVAL = 1.0
#: Results kept in memory while the database is away; beyond, the oldest are dropped.
MAX_PENDING = 10_000
ERROR_STATS_INTERVAL = 10.0
PRUNE_INTERVAL = 3600.0
#: How often the checks without totals for the current hour get them (``closed_totals``): new
#: checks, a new hour, a result stored late. A round with none to make costs two id lists.
TOTALS_INTERVAL = 30.0
#: How often the checks claimed lately are looked over for ones this runner no longer has.
FORGET_EVERY = timedelta(seconds=10)
#: Checks claimed in one go, at most.
CLAIM_LIMIT = 500
#: Probes started or waiting for a slot, per probe slot: a claim beyond this waits (memory
#: stays bounded however far behind the runner is).
TASKS_PER_SLOT = 2


def store_batch(
    batch: list[Outcome], want_figures: bool, patient: bool = True
) -> tuple[Stored, dict[int, HistoryFigures]]:
    """Store a batch; with ``want_figures``, read its checks' uptime and latency figures from
    the rollups for the events.

    The batch is committed before the figures are read: a failed read costs the events their
    uptime, never the batch (stored again, it would announce nothing). Not ``patient``: no
    back-off and retry (the runner's flush loop: a batch the database cannot take now waits in
    the writer for the next flush, a second away, instead of holding the database thread and
    the claims queued behind it).
    """
    with fail_fast() if not patient else contextlib.nullcontext():
        stored = store_outcomes(batch)
    if not want_figures or not stored.checks:
        return stored, {}
    try:
        return stored, history_figures(list(stored.checks))
    except Exception as exc:
        report(exc, "results.uptime", connection.alias)
        return stored, {}


class ResultWriter:
    """Collects outcomes, writes them in batches, then logs and publishes what changed."""

    def __init__(self) -> None:
        self._pending: list[Outcome] = []
        self.written = 0
        self.dropped = 0

    def add(self, outcome: Outcome) -> None:
        self._pending.append(outcome)

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self, patient: bool = True) -> list[Outcome]:
        """Store what is waiting; the outcomes stored. A batch the database cannot take now
        (locked, away) is kept for the next flush; ``patient``: back off and retry first."""
        batch, self._pending = self._pending, []
        if not batch:
            return []
        try:
            watched = listening()
            stored, figures = await sync_to_async(store_batch)(batch, watched, patient)
        except Exception as exc:
            report(exc, "results.store", connection.alias)
            self._keep_or_drop(batch, exc)
            return []
        self.written += len(batch)
        if logger.isEnabledFor(logging.DEBUG):  # the count costs a pass over the batch
            failed = sum(not o.result.ok for o in batch)
            logger.debug("stored %d results (%d failed)", len(batch), failed)
        await self._announce(batch, stored, figures, watched)
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
            # Counted in the runner's row too (``results_dropped``): no silent gap.
            report(
                f"{counted(overflow, 'result')} dropped: the database has been away for "
                f"longer than {counted(MAX_PENDING, 'result')} last",
                "results.drop",
                connection.alias,
                category=classify(error),
            )

    async def _announce(
        self,
        batch: list[Outcome],
        stored: Stored,
        figures: dict[int, HistoryFigures],
        watched: bool,
    ) -> None:
        """Log the changes; while a dashboard is ``watched`` (asked once, before the batch was
        stored with or without its figures), announce the batch as one ``check.results``
        event (the dashboard coalesces it into one frame per browser per flush)."""
        for change in stored.changes:
            _log_change(change)
        if not watched:
            return
        results = []
        for outcome in batch:
            check = stored.checks.get(outcome.check.pk)
            if check is None:
                continue  # deleted while it ran
            results.append(
                {
                    # The id lets a check's page get its own results only (realtime).
                    "check": {**check_summary(check), "id": check.pk},
                    "result": outcome.result_dict(),
                    **figures.get(check.pk, {"uptime_24h": None}),
                }
            )
        changes = [change_event(change) for change in stored.changes]
        await announce("check.results", {"results": results, "changes": changes})


async def announce_changes(changes: list[StateChange]) -> None:
    """Log each stored change of status and announce it (after the commit that stored it)."""
    for change in changes:
        _log_change(change)
    if listening():
        for change in changes:
            await announce("check.status", change_event(change))


def _log_change(change: StateChange) -> None:
    level = logging.WARNING if change.to_status in (DOWN, DEGRADED) else logging.INFO
    reason = f" ({change.reason_category})" if change.reason_category else ""
    during = " during maintenance" if change.during_maintenance else ""
    name = bare_urls(change.health_check.name)
    old, new = change.from_status, change.to_status
    # Pieces redacted one by one: a check named "oauth token" keeps its ": down -> up".
    logger.log(level, "check %s: %s -> %s%s%s", name, old, new, reason, during, extra=CLEAN)


def change_event(change: StateChange) -> dict:
    """A ``check.status`` event, from the stored row."""
    check = change.health_check
    return {
        "id": check.pk,  # lets a check's page get its own changes only
        "name": check.name,
        "tags": check.tag_list,  # lets a tag-filtered dashboard skip what it does not show
        "from": change.from_status,
        "to": change.to_status,
        "at": change.at.isoformat(),
        "reason": change.reason_category,
        "during_maintenance": change.during_maintenance,
        "flapping": check.flapping,
    }


class Monitor:
    """Runs checks concurrently and stores their results.

    Probes run in ``ProbeSlots``: ``per_target`` at once per host and port, ``concurrency`` in
    all (default: sized to the open-files limit). A check whose last run is still going is not
    started again. A result is stamped with its probe's start.

    ``run_forever`` repeats three units of work, each callable on its own (tests do):
    ``start_due`` (claim the due checks, start their probes), ``writer.flush`` (store what
    finished) and ``housekeeping`` (the error log's repeat lines, error statistics,
    maintenance windows, pruning, the runner's own row; in a thread of its own, so it never
    holds up claiming and storing); ``alerts``, when given, beside them until the stop: what
    sends alerts (``alerts.process.supervise``: a process of its own, as ``runchecks`` and
    ``serve`` run it; ``alerts.sender.run_alert_sender``: in this loop).
    """

    def __init__(
        self,
        manager: ConnectionManager,
        concurrency: int | None = None,
        tags: Iterable[str] = (),
        alerts: Callable[[asyncio.Event], Awaitable[None]] | None = None,
        per_target: int | None = None,
    ) -> None:
        self.manager = manager
        #: Only checks with one of these tags are claimed (runners split by tag); () means all.
        self.tags = tuple(tags)
        self.alerts = alerts
        self.slots = ProbeSlots(
            concurrency or default_total(), per_target or settings.PROBES_PER_TARGET
        )
        self.writer = ResultWriter()
        self.stats = RunnerStats(self.tags)
        #: Probes cancelled while running (a stop that would not wait longer); never stored.
        self.cancelled = 0
        self._tasks: set[asyncio.Task] = set()
        self._in_flight: set[int] = set()
        #: The checks this runner claimed lately, with their next due times: what it keeps
        #: running while the database cannot be asked (``start_offline``).
        self._claimed: dict[int, HealthCheck] = {}
        self._forget_at = timezone.now()
        #: Set while claims fail: the next good claim finds checks this runner ran meanwhile.
        self._offline = False

    async def run_check(
        self, check: HealthCheck, stop: asyncio.Event | None = None
    ) -> Outcome | None:
        """Run one check and queue its result; None when ``stop`` came before its turn, when
        its previous run is still going, or for a push check that is not silent (it is never
        probed: its job reports in)."""
        if check.pk in self._in_flight:
            self.stats.runs_skipped += 1
            return None
        self._in_flight.add(check.pk)
        try:
            result, started = await self._probe(check, stop)
        finally:
            self._in_flight.discard(check.pk)
        if result is None:
            return None
        outcome = Outcome(check=check, result=result, checked_at=started)
        self.writer.add(outcome)
        return outcome

    async def _probe(self, check: HealthCheck, stop: asyncio.Event | None):
        due = getattr(check, "due_at", None)
        if check.kind == KIND_PUSH:
            started = timezone.now()
            self.stats.started(due, started)
            result = silence(check, started)
            if result is not None:
                report(
                    result.error_message, "check.push", check.name, category=result.error_category
                )
            return result, started
        if due is not None:
            wait = (due - timezone.now()).total_seconds()
            if wait > 0:  # claimed ahead of its due time (``CLAIM_AHEAD``), holding no slot
                await sleep_to_tick(wait, START_TICK)
        async with self.slots.hold(target_key(check.kind, check.target)):
            if stop is not None and stop.is_set():
                return None, None
            started = timezone.now()
            self.stats.started(due, started)
            try:
                return await run_probe(check, self.manager), started
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

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
        return sorted((o for o in stored if o.stored), key=lambda o: order[o.check.pk])

    async def run_forever(self, stop: asyncio.Event, stop_timeout: float | None = None) -> None:
        """Each enabled check at its own interval until ``stop`` is set; then drain (probes
        still running after ``stop_timeout`` seconds are cancelled) and flush. ``alerts`` runs
        beside it as a task of its own, stopped by the same ``stop``: a slow receiver delays no
        check. Alerts of the last flush wait in the outbox for the next start."""
        # Events a runner stopped between a commit and its announcement never went out: every
        # dashboard rebuilds from what is stored when a runner starts.
        await _quietly(announce_checks_changed, "checks.announce")
        housekeeping = Housekeeping(asyncio.get_running_loop().time, self)
        flusher = asyncio.create_task(self._flush_loop(stop))
        chores = asyncio.create_task(housekeeping.run_until(stop))
        alerts = asyncio.create_task(self.alerts(stop)) if self.alerts is not None else None
        try:
            while not stop.is_set():
                if await self.start_due(stop, CLAIM_AHEAD) >= CLAIM_LIMIT:
                    continue  # a full claim: more are due (behind), claim again at once
                # Also when due but not claimed: another runner holds those rows while it
                # stores their results. Asking again at once would only spin.
                await _wait(stop, max(await self.seconds_to_next(CLAIM_AHEAD), MIN_IDLE))
        finally:
            await self.drain(stop_timeout)
            await flusher
            await self.writer.flush()
            await chores
            await housekeeping.close()
            if alerts is not None:
                await alerts
            await _quietly(flush_error_stats, "error_stats.flush")

    async def start_due(self, stop: asyncio.Event | None = None, ahead: float = 0.0) -> int:
        """Claim the checks due now, or within ``ahead`` seconds (their probes wait for their
        due times), and start their probes; how many started. While the database cannot be
        asked (reported), the checks claimed lately keep their schedule."""
        room = self.slots.total * TASKS_PER_SLOT - len(self._tasks)
        if room <= 0:
            return 0  # behind: claim nothing more until probes finish (bounded memory)
        try:
            due = await sync_to_async(claim_due_checks)(
                tags=self.tags, limit=min(CLAIM_LIMIT, room), ahead=ahead
            )
        except Exception as exc:
            report(exc, "checks.claim", connection.alias)
            if not is_retryable(exc, DATABASE_TRANSIENT):
                return 0
            self._offline = True
            due = self._due_offline(timezone.now())[: min(CLAIM_LIMIT, room)]
        else:
            due = self._back_online(due, timezone.now())
        for check in due:
            self.stats.runs_missed += check.missed_runs
            self._start(check, stop)
        return len(due)

    def _start(self, check: HealthCheck, stop: asyncio.Event | None) -> None:
        task = asyncio.create_task(self.run_check(check, stop))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _back_online(self, claimed: list[HealthCheck], now: datetime) -> list[HealthCheck]:
        """The claimed checks to start. Right after an outage, a check this runner kept running
        meanwhile comes back with its due time from before: it ran already, so it waits for the
        next due time the claim just wrote, missing nothing."""
        if self._offline:
            self._offline = False
            ran = {pk for pk, check in self._claimed.items() if check.next_due_at > now}
            self._remember(claimed, now)
            return [check for check in claimed if check.pk not in ran]
        self._remember(claimed, now)
        return claimed

    def _remember(self, claimed: list[HealthCheck], now: datetime) -> None:
        for check in claimed:
            self._claimed[check.pk] = check
        if now < self._forget_at:
            return
        # A check not claimed again when due has gone to another runner, or is gone. Looked
        # for now and then: every check at every claim would cost more than the claim.
        self._forget_at = now + FORGET_EVERY
        for pk, check in list(self._claimed.items()):
            if (now - check.next_due_at).total_seconds() > check.interval:
                del self._claimed[pk]

    def _due_offline(self, now: datetime) -> list[HealthCheck]:
        """The checks claimed lately that are due by their last claim, moved on one interval:
        with the database away, the runner keeps checking what it was checking."""
        due = [c for c in self._claimed.values() if c.next_due_at <= now]
        for check in due:
            _move_on(check, now)
        return due

    async def seconds_to_next(self, ahead: float = 0.0) -> float:
        """How long the scheduler may sleep: until the next check is due (``ahead`` seconds
        before, for a claim that takes checks that far ahead), ``MAX_IDLE`` at most."""
        try:
            return await sync_to_async(seconds_until_next_due)(timezone.now(), self.tags, ahead)
        except Exception as exc:
            report(exc, "checks.claim", connection.alias)
            return MAX_IDLE

    async def drain(self, grace: float | None = None) -> None:
        """Wait for every probe started by ``start_due`` to finish (each within its timeout),
        or ``grace`` seconds at most: then cancel the rest (``cancelled`` counts them)."""
        if not self._tasks:
            return
        _done, running = await asyncio.wait(self._tasks, timeout=grace)
        for task in running:
            task.cancel()
        if running:
            # Let the cancelled probes unwind (close their sockets) before the last flush.
            await asyncio.wait(running)

    def figures(self) -> dict:
        """The counts a ``Runner`` row carries besides the lag."""
        return {
            "probe_slots": self.slots.total,
            "probes_running": len(self._in_flight),
            "results_stored": self.writer.written,
            "results_pending": self.writer.pending,
            "results_dropped": self.writer.dropped,
        }

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _wait(stop, FLUSH_INTERVAL)
            try:
                await self.writer.flush(patient=False)
            except Exception as exc:
                # Storing must outlive any one failure: results keep coming.
                report(exc, "results.flush", connection.alias)


class Housekeeping:
    """The runner's chores besides checking, each on its own period, in a thread and database
    connection of their own: a slow prune never holds up claiming and storing. The runner's
    report has a thread and connection of its own too: a prune of a long history may take
    longer than three report periods, after which the runner would look gone. A failure is
    reported and the chore tried again next period."""

    def __init__(self, clock: Callable[[], float], monitor: Monitor | None = None) -> None:
        self._clock = clock
        self._monitor = monitor
        self._last_stats = self._last_prune = self._last_report = clock()
        self._last_totals = float("-inf")  # the first round makes them
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="housekeeping")
        self._report_thread = ThreadPoolExecutor(1, thread_name_prefix="runner-report")

    async def run_until(self, stop: asyncio.Event) -> None:
        await asyncio.gather(_every(stop, self.run_due), _every(stop, self.report_due))

    async def run_due(self) -> None:
        """The chores that are due, one after the other."""
        # Repeats counted in a window that has ended get their one repeat line now, not
        # whenever the next error of the kind happens to come.
        get_global_error_handler().close_expired_windows()
        now = self._clock()
        if now - self._last_stats >= ERROR_STATS_INTERVAL:
            self._last_stats = now
            await self._chore(flush_error_stats, "error_stats.flush")
            await announce_changes(await self._chore(apply_maintenance, "maintenance.apply") or [])
        if now - self._last_totals >= TOTALS_INTERVAL:
            self._last_totals = now
            await self._chore(closed_totals.refresh, "closed_totals.refresh")
        if now - self._last_prune >= PRUNE_INTERVAL:
            self._last_prune = now
            await self._chore(prune_results, "results.prune")
            await self._chore(rollups.prune, "rollups.prune")

    async def report_due(self) -> None:
        """The runner's report, when one is due."""
        now = self._clock()
        if self._monitor is not None and now - self._last_report >= REPORT_INTERVAL:
            self._last_report = now
            await self._report(stopped=False)

    async def close(self) -> None:
        """Say the runner stopped, and close the threads' database connections."""
        await self._report(stopped=True)
        loop = asyncio.get_running_loop()
        for thread in (self._thread, self._report_thread):
            await loop.run_in_executor(thread, connections.close_all)
            thread.shutdown()

    async def _report(self, stopped: bool) -> None:
        monitor = self._monitor
        if monitor is None:
            return
        figures = {**monitor.stats.take_lags(), **monitor.figures()}
        await self._chore(
            lambda: report_runner(monitor.stats, figures, stopped),
            "runner.report",
            self._report_thread,
        )

    async def _chore(self, func, operation: str, thread: ThreadPoolExecutor | None = None):
        """Run a chore in the housekeeping thread (or ``thread``): its answer, or None when it
        failed."""

        def run():
            close_stale_connection()
            return func()

        try:
            return await asyncio.get_running_loop().run_in_executor(thread or self._thread, run)
        except Exception as exc:
            report(exc, operation, connection.alias)
            return None


async def _every(stop: asyncio.Event, chores: Callable[[], Awaitable[None]]) -> None:
    while not stop.is_set():
        await _wait(stop, FLUSH_INTERVAL)
        await chores()


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.01))
    except TimeoutError:
        pass


async def _quietly(func, operation: str):
    """Run housekeeping in the database thread: its answer, or None when it failed (reported,
    and tried again on the next round)."""
    try:
        return await sync_to_async(func)()
    except Exception as exc:
        report(exc, operation, connection.alias)
        return None


def _due_filter(now: datetime, ahead: float = 0.0) -> Q:
    due = Q(next_due_at__isnull=True) | Q(next_due_at__lte=now)
    if ahead:
        # Not a push check: its due time is when its silence would begin to matter, and
        # ``next_due`` leaves it there until then (it would be claimed again and again).
        soon = Q(next_due_at__lte=now + timedelta(seconds=ahead)) & ~Q(kind=KIND_PUSH)
        due |= soon
    return due


def claim_due_checks(
    now: datetime | None = None,
    limit: int = CLAIM_LIMIT,
    tags: Iterable[str] = (),
    ahead: float = 0.0,
) -> list[HealthCheck]:
    """The enabled checks due at ``now`` (default: when the claim runs, not when it was
    queued for the database thread), or within ``ahead`` seconds of it (not push checks), each
    moved to its next due time in one transaction; each carries ``due_at``, when it was or is
    due (None for a new check). With ``tags``, only checks that have one of them.

    Several runners may share one database: on PostgreSQL the rows are locked with SKIP LOCKED,
    so each due check goes to exactly one runner; SQLite's IMMEDIATE transactions serialise
    the runners instead. A claim is not retried: the next one comes within a second, and
    meanwhile the runner goes on with what it holds.
    """
    close_stale_connection()
    with fail_fast():
        return _claim(now or timezone.now(), limit, tuple(tags), ahead)


#: Columns a claimed check never needs: its stored state (the batch that stores its result
#: reads that afresh, under lock), its edit time and when its push job last started. Not
#: read, a claim of 500 checks loads six columns of times and 500 ``recent`` texts (about
#: 1 KB each) fewer. The probes, the scheduling and the offline runs read only the rules, the
#: due times and, for a push check, its last ping.
CLAIM_DEFERRED = (*STATE_FIELDS, "updated_at", "push_started_at")
_CLAIMED_FIELDS = loaded_fields(HealthCheck, CLAIM_DEFERRED)


@retry_transaction
def _claim(now: datetime, limit: int, tags: tuple[str, ...], ahead: float) -> list[HealthCheck]:
    due = instances(
        HealthCheck.objects.select_for_update(skip_locked=True)
        .filter(_due_filter(now, ahead), enabled=True)
        .with_any_tag(tags)
        .order_by(F("next_due_at").asc(nulls_first=True))[:limit],
        _CLAIMED_FIELDS,
    )
    for check in due:
        _move_on(check, now)
    save_fields(due, ["next_due_at"])
    return due


def _move_on(check: HealthCheck, now: datetime) -> None:
    """Claim ``check`` at ``now``: it carries when it was due (``due_at``) and how many runs
    between then and now will never be made up for (``missed_runs``)."""
    check.due_at = check.next_due_at
    check.next_due_at = next_due(check, now)
    late = 0.0 if check.due_at is None else max(0.0, (now - check.due_at).total_seconds())
    check.missed_runs = int(late // check.interval) if check.kind != KIND_PUSH else 0


#: The golden ratio's fraction: consecutive ids land far apart in (0, 1).
_SPREAD = 0.6180339887498949


def next_due(check: HealthCheck, now: datetime) -> datetime:
    """When a check claimed at ``now`` is due next.

    Its last due time plus the interval: no drift, so a 1 s check runs 60 times a minute. A
    new check (run now), or one more than an interval behind (the runners were stopped), is
    due at its own phase of the interval (``_in_own_slot``), at least half an interval on.
    """
    # A push check is looked at when its silence would begin to matter, not an interval on.
    if check.kind == KIND_PUSH:
        due = deadline(check, check.last_ping_at or check.created_at or now)
        if due > now:
            return due
    interval = timedelta(seconds=check.interval)
    last = getattr(check, "due_at", check.next_due_at)
    if last is not None and now - last <= interval:
        return last + interval
    return _in_own_slot(check, now + interval / 2)


def _in_own_slot(check: HealthCheck, after: datetime) -> datetime:
    """The first time from ``after`` on at the check's own phase of its interval on the clock.

    Phases are spread by id over the whole interval and fixed to the clock, not to the claim:
    checks made (or restarted) together run evenly spread, whenever each was claimed. A phase
    counted from the claim would put every check of a burst in the half interval after it,
    leaving the other half idle: the runner would work at twice the rate half the time.
    """
    seconds = check.interval
    phase = (check.pk * _SPREAD) % 1.0 * seconds
    turns = math.ceil((after.timestamp() - phase) / seconds)
    return datetime.fromtimestamp(turns * seconds + phase, UTC)


def seconds_until_next_due(now: datetime, tags: Iterable[str] = (), ahead: float = 0.0) -> float:
    """Seconds until a check is due, ``ahead`` seconds early (0 when one is due now), at most
    ``MAX_IDLE``."""
    soonest = (
        HealthCheck.objects.filter(enabled=True, next_due_at__isnull=False)
        .with_any_tag(tags)
        .order_by("next_due_at")
        .values_list("next_due_at", flat=True)
        .first()
    )
    if soonest is None:
        return MAX_IDLE
    return min(MAX_IDLE, max(0.0, (soonest - now).total_seconds() - ahead))


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
