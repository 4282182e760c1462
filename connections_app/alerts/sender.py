"""The alert sender: claims due alerts with a lease, sends them with bounded concurrency,
records each outcome, and retries on the outbox's schedule until an alert is sent or failed.

Units of work, each callable on its own (tests do, with an injected clock), as healthchecks'
``sendalerts`` shapes them:

- ``send_due``: claim what is due (as many as there are free slots) and start sending it;
  whether more was due than could be claimed;
- ``record``: write the outcomes of the sends that finished, in one transaction;
- ``remind``: enqueue the reminders that are due.

``run_forever`` repeats them until stopped (``Monitor.run_forever`` runs it beside the checks,
so ``runchecks`` and ``serve`` both send alerts).

Claims: in one transaction, ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (an IMMEDIATE
transaction on SQLite) picks pending alerts due by now and alerts whose lease lapsed, and marks
them ``sending`` until ``now + lease``. Any number of runners share the outbox; an alert whose
runner died is taken over when its lease ends. The lease outlasts a send (checked at start-up),
so no alert is sent by two runners at once. Every outcome is written only if the claim is still
the writer's (``claimed_until`` unchanged): a late runner cannot overwrite a newer claim.

Retries follow ``retry.TASK`` (``ALERT_RETRY_*``): after try n the next is ``delay(n)`` later,
or later still when the receiver's ``Retry-After`` asks (never beyond the cap). A 4xx other than
408 and 429 fails at once; after the last retry an alert fails with its last error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection, connections
from django.utils import timezone

from connections_app import retry
from connections_app.alerts.bodies import facts_of
from connections_app.alerts.delivery import Outcome, deliver
from connections_app.alerts.enqueue import enqueue_reminders
from connections_app.alerts.models import FAILED, PENDING, SENDING, SENT, Alert
from connections_app.connection_manager import ConnectionConfig, ConnectionManager
from connections_app.db.loop_connection import close_stale_connection
from connections_app.db.transactions import retry_transaction
from connections_app.error_handler import report
from connections_app.http_retry import HttpRetry

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Sends at once, in all and to one channel: a receiver that stalls holds at most
#: PER_CHANNEL slots, and the other channels keep the rest.
CONCURRENCY = 20
PER_CHANNEL = 10
#: Seconds between looks at the outbox when nothing was due.
POLL_INTERVAL = 1.0
#: Seconds between two rounds of reminders.
REMIND_INTERVAL = 30.0
#: After a send finishes, wait this long for others before recording and claiming again: a
#: flood of alerts costs a transaction per batch, not two per alert (docs/BENCHMARKS.md).
GATHER = 0.01


def alert_policy() -> retry.RetryPolicy:
    """``retry.TASK`` with the environment's ``ALERT_RETRY_*``."""
    return replace(
        retry.TASK,
        attempts=settings.ALERT_RETRY_ATTEMPTS,
        base_delay=settings.ALERT_RETRY_BASE_DELAY,
        cap=settings.ALERT_RETRY_MAX_DELAY,
    )


def connection_config() -> ConnectionConfig:
    """The one pooled client for all alerts: no retries of its own (the outbox retries,
    persistently), a try bounded by ``ALERT_SEND_TIMEOUT``."""
    seconds = settings.ALERT_SEND_TIMEOUT
    return ConnectionConfig(
        connect_timeout=min(5.0, seconds),
        read_timeout=seconds,
        total_timeout=seconds,
        pool_per_host=PER_CHANNEL,
        pool_total=CONCURRENCY,
        retry=retry.NONE,
    )


@dataclass(frozen=True)
class Finished:
    """One try's outcome, waiting to be recorded against its claim."""

    alert_id: int
    claimed_until: datetime
    attempts: int
    outcome: Outcome


class AlertSender:
    """Sends the outbox's due alerts through ``manager`` (its pool, no retries of its own), at
    most ``concurrency`` at once and ``per_channel`` to one channel; ``now`` is the clock every
    due time, lease and retry is read on (tests move it by hand)."""

    def __init__(
        self,
        manager: ConnectionManager,
        *,
        now: Callable[[], datetime] = timezone.now,
        policy: retry.RetryPolicy | None = None,
        lease: float | None = None,
        send_timeout: float | None = None,
        concurrency: int = CONCURRENCY,
        per_channel: int = PER_CHANNEL,
    ) -> None:
        self.manager = manager
        self.now = now
        self.policy = policy or alert_policy()
        self.lease = settings.ALERT_LEASE_SECONDS if lease is None else lease
        self.send_timeout = settings.ALERT_SEND_TIMEOUT if send_timeout is None else send_timeout
        self.concurrency = concurrency
        self.per_channel = per_channel
        self._sending: dict[asyncio.Task, int] = {}  # task -> channel id
        self._finished: list[Finished] = []
        self._wake = asyncio.Event()
        self._db: ThreadPoolExecutor | None = None

    async def send_due(self) -> bool:
        """Record what finished, claim the alerts due now (up to the free slots) and start
        sending them, in one transaction; whether more were due than could be claimed (no free
        slot: False, and a finished send wakes the loop)."""
        free = self.concurrency - len(self._sending)
        if free <= 0:
            await self.record()
            return False
        finished, self._finished = self._finished, []
        busy = Counter(self._sending.values())
        try:
            claimed, more = await self._in_db(
                record_and_claim, finished, self.now(), free, self.lease, self.policy, busy,
                self.per_channel,
            )  # fmt: skip
        except Exception as exc:
            report(exc, "alerts.claim", connection.alias)
            self._finished[:0] = finished
            return False
        for alert in claimed:
            task = asyncio.create_task(self._send(alert))
            self._sending[task] = alert.channel_id
            task.add_done_callback(self._done)
        return more

    async def record(self) -> int:
        """Write the outcomes of the finished sends; how many. Kept for the next call when the
        database cannot take them (their leases make sure nothing is lost meanwhile)."""
        finished, self._finished = self._finished, []
        if not finished:
            return 0
        try:
            await self._in_db(record_outcomes, finished, self.now(), self.policy)
        except Exception as exc:
            report(exc, "alerts.record", connection.alias)
            self._finished[:0] = finished
            return 0
        return len(finished)

    async def remind(self) -> int:
        """Enqueue the reminders due now; how many."""
        try:
            return len(await self._in_db(_fresh_reminders, self.now()))
        except Exception as exc:
            report(exc, "alerts.remind", connection.alias)
            return 0

    async def drain(self) -> None:
        """Wait for every send started (each bounded by the send timeout), then record."""
        if self._sending:
            await asyncio.wait(list(self._sending))
        await self.record()

    async def aclose(self) -> None:
        """Close the sender's database connection and its thread."""
        if self._db is not None:
            await self._in_db(connections.close_all)
            self._db.shutdown(wait=False)
            self._db = None

    async def _in_db(self, func: Callable[..., T], *args) -> T:
        """``func(*args)`` in the sender's own database thread: its claims never queue behind
        the checks' writes in the runner's database thread (docs/BENCHMARKS.md, Alerts)."""
        if self._db is None:
            self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alerts-db")
        return await sync_to_async(func, thread_sensitive=False, executor=self._db)(*args)

    async def run_forever(self, stop: asyncio.Event) -> None:
        clock = asyncio.get_running_loop().time
        next_reminders = clock()
        try:
            while not stop.is_set():
                more = await self.send_due()
                if clock() >= next_reminders:
                    next_reminders = clock() + REMIND_INTERVAL
                    await self.remind()
                if not more:
                    await self._idle(stop)
        finally:
            await self.drain()
            await self.aclose()

    async def _idle(self, stop: asyncio.Event) -> None:
        """Until stopped, a send finishes (and ``GATHER`` more), or ``POLL_INTERVAL`` passes."""
        self._wake.clear()
        waits = [asyncio.ensure_future(e.wait()) for e in (stop, self._wake)]
        try:
            await asyncio.wait(waits, timeout=POLL_INTERVAL, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        if self._wake.is_set() and not stop.is_set():
            await asyncio.sleep(GATHER)

    async def _send(self, alert: Alert) -> None:
        try:
            facts = facts_of(alert, settings.SITE_URL)
            outcome = await deliver(alert, facts, self.manager, self.send_timeout)
        except Exception as exc:  # a bug must cost one try, not the loop
            report(exc, "alerts.send", alert.channel.shown_target)
            outcome = Outcome(False, error=f"{type(exc).__name__} while sending (see the log)")
        if not outcome.sent:
            where = alert.channel.shown_target
            report(outcome.error, "alerts.send", where, category=outcome.category or "unknown")
        self._finished.append(Finished(alert.pk, alert.claimed_until, alert.attempts, outcome))

    def _done(self, task: asyncio.Task) -> None:
        self._sending.pop(task, None)
        self._wake.set()


def _fresh_reminders(now: datetime) -> list[Alert]:
    close_stale_connection()
    return enqueue_reminders(now)


def record_and_claim(
    finished: list[Finished],
    now: datetime,
    limit: int,
    lease: float,
    policy: retry.RetryPolicy,
    busy: Counter,
    per_channel: int,
) -> tuple[list[Alert], bool]:
    """``record_outcomes`` then ``claim_due`` in one transaction: a flood of alerts costs one
    transaction per round. The connection is a loop's (``close_stale_connection``): kept
    between rounds, where reconnecting each round (CONN_MAX_AGE=0, SQLite's default) cost a
    third of the sender's time in bench_alerts."""
    close_stale_connection()
    return _record_and_claim(finished, now, limit, lease, policy, busy, per_channel)


@retry_transaction
def _record_and_claim(finished, now, limit, lease, policy, busy, per_channel):
    if finished:
        _record(finished, now, policy)
    return _claim(now, limit, lease, policy, busy, per_channel)


def claim_due(
    now: datetime,
    limit: int,
    lease: float,
    policy: retry.RetryPolicy,
    busy: Counter | None = None,
    per_channel: int = PER_CHANNEL,
) -> tuple[list[Alert], bool]:
    """Claim up to ``limit`` due alerts, at most ``per_channel`` per channel counting the
    ``busy`` sends already running; the claimed alerts (channel, check and change loaded) and
    whether more were due."""
    close_stale_connection()
    return _claim(now, limit, lease, policy, busy or Counter(), per_channel)


@retry_transaction
def _claim(now, limit, lease, policy, busy, per_channel) -> tuple[list[Alert], bool]:
    full = [channel for channel, count in busy.items() if count >= per_channel]
    due = list(
        Alert.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(status__in=(PENDING, SENDING), next_attempt_at__lte=now)
        .exclude(channel_id__in=full)
        .select_related("channel", "health_check", "state_change")
        .order_by("next_attempt_at", "pk")[:limit]
    )
    room = Counter(busy)
    claimed, given_up = [], []
    for alert in due:
        if room[alert.channel_id] >= per_channel:
            continue  # left pending, for the next round
        if not alert.channel.enabled:
            _fail(alert, "not sent: the channel was disabled")
            given_up.append(alert)
        elif alert.attempts > (policy.attempts or 0):
            # Every try was claimed by a runner that stopped before it could say how it went.
            _fail(alert, alert.last_error or "the runner sending it stopped before it could tell")
            given_up.append(alert)
        else:
            room[alert.channel_id] += 1
            alert.attempts += 1
            alert.status = SENDING
            alert.claimed_until = alert.next_attempt_at = now + timedelta(seconds=lease)
            claimed.append(alert)
    fields = ["status", "attempts", "claimed_until", "next_attempt_at", "last_error"]
    Alert.objects.bulk_update(claimed + given_up, fields)
    return claimed, len(due) == limit


def _fail(alert: Alert, error: str) -> None:
    alert.status, alert.claimed_until, alert.last_error = FAILED, None, error


def record_outcomes(finished: list[Finished], now: datetime, policy: retry.RetryPolicy) -> int:
    """Write each try's outcome, if its claim is still the latest; how many claims were lost
    (another runner took the alert over after the lease ended: it is sent again, and the
    receiver drops the repeat by its Idempotency-Key)."""
    close_stale_connection()
    return _record(finished, now, policy)


@retry_transaction
def _record(finished: list[Finished], now: datetime, policy: retry.RetryPolicy) -> int:
    # Alerts claimed together and sent alike are written by one UPDATE (a flood is mostly
    # that); each failure has its own error and next attempt.
    alike: dict[tuple, list[int]] = defaultdict(list)
    lost = 0
    for item in finished:
        if item.outcome.sent:
            alike[(item.claimed_until, item.outcome.status)].append(item.alert_id)
            continue
        claim = Alert.objects.filter(
            pk=item.alert_id, status=SENDING, claimed_until=item.claimed_until
        )
        if not claim.update(**outcome_fields(item, now, policy)):
            lost += 1
    for (claimed_until, status), ids in alike.items():
        claim = Alert.objects.filter(pk__in=ids, status=SENDING, claimed_until=claimed_until)
        lost += len(ids) - claim.update(
            status=SENT, sent_at=now, response_status=status, claimed_until=None
        )
    if lost:
        logger.warning("alerts: %d outcomes came after their lease had ended", lost)
    return lost


def outcome_fields(item: Finished, now: datetime, policy: retry.RetryPolicy) -> dict:
    """The columns one try's outcome sets: sent, pending again later, or failed."""
    outcome = item.outcome
    fields: dict = {"claimed_until": None, "response_status": outcome.status}
    if outcome.sent:
        return fields | {"status": SENT, "sent_at": now}
    fields["last_error"] = outcome.error
    if outcome.permanent or item.attempts > (policy.attempts or 0):
        return fields | {"status": FAILED}
    wait = next_delay(policy, item.attempts, outcome.retry_after)
    return fields | {"status": PENDING, "next_attempt_at": now + timedelta(seconds=wait)}


def next_delay(policy: retry.RetryPolicy, tries: int, retry_after: str | None) -> float:
    """Seconds after try ``tries`` (1-based) before the next: the policy's backoff, or the
    receiver's ``Retry-After`` when longer, never beyond the policy's cap."""
    backoff = policy.delay(tries)
    return HttpRetry(policy, max_retry_after=policy.cap).wait(backoff, retry_after)


async def run_alert_sender(stop: asyncio.Event) -> None:
    """The sender with its own pooled client, until ``stop``; what the runner starts."""
    async with ConnectionManager(connection_config()) as manager:
        await AlertSender(manager).run_forever(stop)
