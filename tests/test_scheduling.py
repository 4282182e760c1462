"""Scheduling under load: probe slots per target, runs that are still going, due times without
drift, the lag each runner reports. In-process, against real loopback targets."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from connections_app import monitor as monitor_module
from connections_app.connection_manager import ConnectionManager
from connections_app.models import CheckResult, HealthCheck, Runner
from connections_app.monitor import Monitor, ResultWriter, claim_due_checks, next_due
from connections_app.probe_slots import ProbeSlots, target_key
from connections_app.probes import ProbeResult
from connections_app.results import Outcome
from connections_app.runners import RunnerStats, live_runners, percentile, report
from connections_app.summary import health_summary
from tests.http_targets import HttpTarget
from tests.realtime.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def only(db) -> None:
    await HealthCheck.objects.all().adelete()  # the self-checks are tested on their own


@pytest.fixture
def stalling():
    """A second target, on its own port: it accepts requests and answers none."""
    with HttpTarget() as target:
        yield target


async def add(name: str, target: str, **fields) -> HealthCheck:
    values = {"kind": "http", "interval": 10, "timeout": 2} | fields
    return await HealthCheck.objects.acreate(name=name, target=target, **values)


def test_a_target_is_its_host_and_port():
    assert target_key("http", "https://API.example.com:8443/health") == "api.example.com:8443"
    assert target_key("tcp", "db.internal:5432") == "db.internal:5432"
    assert target_key("redis", "redis://:secret@cache:6379/0") == "cache:6379"
    assert target_key("database", "") == "database"
    assert target_key("http", "https://example.com:notaport/") == "example.com:"


async def test_a_target_waiting_for_its_slots_holds_none_of_the_total():
    slots = ProbeSlots(total=2, per_target=1)
    order: list[str] = []
    slow_started, release = asyncio.Event(), asyncio.Event()

    async def probe(key: str, name: str) -> None:
        async with slots.hold(key):
            order.append(name)
            if name == "slow-1":
                slow_started.set()
                await release.wait()

    first = asyncio.ensure_future(probe("slow:1", "slow-1"))
    await slow_started.wait()
    second = asyncio.ensure_future(probe("slow:1", "slow-2"))  # waits for slow:1's one slot
    await probe("fast:1", "fast")  # the total's second slot is free
    assert order == ["slow-1", "fast"]
    release.set()
    await asyncio.gather(first, second)
    assert order == ["slow-1", "fast", "slow-2"] and slots.targets == 0


async def test_a_probe_cancelled_while_it_waits_for_a_slot_holds_none():
    slots = ProbeSlots(total=1, per_target=2)
    holding, release = asyncio.Event(), asyncio.Event()

    async def probe(key: str) -> None:
        async with slots.hold(key):
            holding.set()
            await release.wait()

    first = asyncio.ensure_future(probe("a:1"))
    await holding.wait()
    # One waits for its target's slot (the target's two are both taken), one for the total's.
    busy = ProbeSlots(total=1, per_target=1)
    async with busy.hold("b:1"):
        waiting_target = asyncio.ensure_future(probe_with(busy, "b:1"))
        waiting_total = asyncio.ensure_future(probe("c:1"))
        await asyncio.sleep(0)
        waiting_target.cancel()
        waiting_total.cancel()
        for task in (waiting_target, waiting_total):
            with pytest.raises(asyncio.CancelledError):
                await task
    release.set()
    await first
    assert (slots.targets, busy.targets) == (0, 0)
    # Every slot came back: both can be held again at once (bounded: no wait forever).
    async with asyncio.timeout(5), slots.hold("c:1"), busy.hold("b:1"):
        pass


async def probe_with(slots: ProbeSlots, key: str) -> None:
    async with slots.hold(key):
        pass  # never reached: cancelled while waiting


async def test_a_stalled_host_holds_only_its_own_slots(only, http_target, stalling):
    # Six checks of a host that never answers, three of a healthy one, five slots in all: with
    # one bound for everything the stalled checks would hold all five for their whole timeout.
    for n in range(6):
        await add(f"stalled-{n}", stalling.url("/stall"), timeout=30)
    for n in range(3):
        await add(f"healthy-{n}", http_target.url("/ok"))
    async with ConnectionManager() as manager:
        monitor = Monitor(manager, concurrency=5, per_target=2)
        assert await monitor.start_due() == 9
        await wait_until(lambda: monitor.writer.pending == 3, within=10)
        assert {o.check.name for o in monitor.writer._pending} == {f"healthy-{n}" for n in range(3)}
        assert monitor.figures()["probes_running"] == 6  # stalled: 2 probing, 4 waiting
        await monitor.drain(grace=0)
    assert monitor.cancelled == 2  # only two ever held a slot


async def test_a_check_still_running_is_not_started_again(only, stalling):
    check = await add("stalled", stalling.url("/stall"), timeout=30, interval=1)
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        assert await monitor.start_due() == 1
        await wait_until(lambda: stalling.hits["/stall"] == 1, within=10)
        await HealthCheck.objects.filter(pk=check.pk).aupdate(next_due_at=timezone.now())
        assert await monitor.start_due() == 1  # claimed: it was due ...
        await asyncio.sleep(0)  # ... and its task ran, and found the check still going
        assert monitor.stats.runs_skipped == 1 and stalling.hits["/stall"] == 1
        await monitor.drain(grace=0)


async def test_claims_stop_while_the_runner_is_that_far_behind(only, stalling):
    for n in range(5):
        await add(f"stalled-{n}", stalling.url("/stall"), timeout=30)
    async with ConnectionManager() as manager:
        monitor = Monitor(manager, concurrency=1)
        assert await monitor.start_due() == 2  # two tasks per slot
        assert await monitor.start_due() == 0
        assert await HealthCheck.objects.filter(next_due_at=None).acount() == 3
        await monitor.drain(grace=0)


async def test_a_result_is_stamped_when_its_probe_started(only, http_target):
    await add("slow", http_target.url("/slow/0.5"))
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        before = timezone.now()
        await monitor.start_due()
        await monitor.drain()
        after = timezone.now()
        await monitor.writer.flush()
    result = await CheckResult.objects.aget()
    assert before <= result.checked_at <= after - timedelta(seconds=0.4)


async def test_the_lag_of_a_late_run_is_measured_and_reported(only, http_target):
    check = await add("late", http_target.url("/ok"))
    due = timezone.now() - timedelta(seconds=2)
    await HealthCheck.objects.filter(pk=check.pk).aupdate(next_due_at=due)
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        await monitor.start_due()
        await monitor.drain()
        await monitor.writer.flush()
    (lag,) = monitor.stats.lags_ms
    assert 2000 <= lag < 60_000
    figures = {**monitor.stats.take_lags(), **monitor.figures()}
    await asyncio.to_thread(report, monitor.stats, figures)
    runner = await Runner.objects.aget()
    assert runner.lag_p95_ms == lag and runner.results_stored == 1 and runner.runs == 1
    (shown,) = (await asyncio.to_thread(health_summary))["runners"]
    assert shown["name"] == monitor.stats.name and shown["lag_max_ms"] == lag


def test_next_due_is_the_last_due_plus_the_interval():
    now = timezone.now()
    check = HealthCheck(pk=7, kind="http", interval=1, next_due_at=now - timedelta(seconds=0.9))
    check.due_at = check.next_due_at
    # Claimed 0.9 s late, still due 1 s after the last due time: 60 runs a minute, not 53.
    assert next_due(check, now) == check.due_at + timedelta(seconds=1)


def test_new_and_long_stopped_checks_get_phases_of_their_own():
    now = timezone.now()
    phases = set()
    for pk in range(1, 21):
        check = HealthCheck(pk=pk, kind="http", interval=60)
        check.due_at = None if pk % 2 else now - timedelta(hours=1)
        wait = (next_due(check, now) - now).total_seconds()
        assert 30 <= wait < 90
        phases.add(round(wait))
    assert len(phases) >= 15  # spread, not in lock-step


def test_checks_claimed_together_spread_over_their_whole_interval():
    now = timezone.now()
    seconds_past = Counter()
    for pk in range(1, 1001):
        check = HealthCheck(pk=pk, kind="http", interval=10)
        check.due_at = None  # new: run at the claim, then in its own phase
        due = next_due(check, now)
        assert now + timedelta(seconds=5) <= due < now + timedelta(seconds=15)
        seconds_past[int(due.timestamp()) % 10] += 1
    # Every second of the interval gets its tenth of the checks, give or take a few: none is
    # left idle while another runs at twice the rate.
    assert sorted(seconds_past) == list(range(10))
    assert max(seconds_past.values()) - min(seconds_past.values()) <= 10


def test_a_check_keeps_its_phase_whenever_it_is_claimed_anew():
    check = HealthCheck(pk=42, kind="http", interval=60)
    check.due_at = None
    start = timezone.now()
    phases = {
        round(next_due(check, start + timedelta(seconds=s)).timestamp() % 60, 3)
        for s in (0, 7, 31, 3600)
    }
    assert len(phases) == 1


async def test_claimed_checks_carry_when_they_were_due(only, http_target):
    check = await add("api", http_target.url("/ok"))
    due = timezone.now() - timedelta(seconds=3)
    await HealthCheck.objects.filter(pk=check.pk).aupdate(next_due_at=due)
    (claimed,) = await asyncio.to_thread(claim_due_checks)
    assert claimed.due_at == due and claimed.next_due_at == due + timedelta(seconds=10)
    await check.arefresh_from_db()
    assert check.next_due_at == claimed.next_due_at


async def test_a_claimed_check_is_run_and_stored_without_reading_its_stored_state(
    only, http_target
):
    # The claim leaves the state out (monitor.CLAIM_DEFERRED): probing, judging and storing
    # must not load it back one check at a time (a deferred column read is a query each).
    await add("api", http_target.url("/ok"))
    await add("down", http_target.url("/status/500"))
    await add("job", "", kind="push", grace=0)
    await HealthCheck.objects.filter(name="job").aupdate(
        created_at=timezone.now() - timedelta(minutes=5)
    )
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        assert await monitor.start_due() == 3
        await monitor.drain()
        stored = await monitor.writer.flush()
    deferred = {HealthCheck._meta.get_field(n).attname for n in monitor_module.CLAIM_DEFERRED}
    assert [o.check.get_deferred_fields() for o in stored] == [deferred] * 3
    assert sorted(o.status for o in stored) == ["degraded", "down", "up"]


async def test_a_claim_ahead_takes_checks_due_soon_and_their_probes_wait_for_it(only, http_target):
    soon = await add("soon", http_target.url("/ok"))
    later = await add("later", http_target.url("/ok"))
    job = await add("job", "", kind="push")
    now = timezone.now()
    # Far enough ahead that the push job is not due yet when the claim runs, on a busy machine.
    due = now + timedelta(seconds=1.5)
    await HealthCheck.objects.filter(pk__in=[soon.pk, job.pk]).aupdate(next_due_at=due)
    await HealthCheck.objects.filter(pk=later.pk).aupdate(next_due_at=now + timedelta(seconds=10))
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        # A push check is claimed when its silence is due, never ahead.
        assert await monitor.start_due(ahead=2) == 1
        await monitor.drain()
        (stored,) = await monitor.writer.flush()
    assert stored.check.pk == soon.pk and stored.check.missed_runs == 0
    assert stored.checked_at >= due  # started at its due time, not when claimed
    await soon.arefresh_from_db()
    assert soon.next_due_at == due + timedelta(seconds=10)
    (lag,) = monitor.stats.lags_ms
    assert 0 <= lag < 1000


async def test_a_full_claim_is_followed_by_another_at_once(only, http_target, monkeypatch):
    # Behind: claims of CLAIM_LIMIT checks each until one is not full, and only then the
    # next-due query and the wait.
    monkeypatch.setattr(monitor_module, "CLAIM_LIMIT", 2)
    for n in range(5):
        await add(f"c{n}", http_target.url("/ok"))
    stop = asyncio.Event()
    started_when_asked: list[int] = []

    async def seconds_to_next(self, ahead: float = 0.0) -> float:
        started_when_asked.append(len(self._claimed))
        stop.set()
        return 0.0

    monkeypatch.setattr(Monitor, "seconds_to_next", seconds_to_next)
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        await asyncio.wait_for(monitor.run_forever(stop), timeout=30)
    assert started_when_asked == [5]  # 2 + 2 + 1 claimed before the first wait


def test_percentiles_are_nearest_rank():
    ordered = [float(n) for n in range(1, 101)]
    assert (percentile(ordered, 0.5), percentile(ordered, 0.95)) == (50.0, 95.0)
    assert percentile([], 0.5) is None


async def test_a_stopped_runner_is_no_longer_live(db):
    stats = RunnerStats()
    await asyncio.to_thread(report, stats, {}, stopped=False)
    assert [r.name for r in await asyncio.to_thread(live_runners)] == [stats.name]
    await asyncio.to_thread(report, stats, {}, stopped=True)
    assert await asyncio.to_thread(live_runners) == []


@pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
    reason="holds the write lock of the SQLite test database (the suite's default)",
)
async def test_results_beyond_the_buffer_are_dropped_counted_and_reported(
    only, http_target, monkeypatch, caplog
):
    monkeypatch.setattr(monitor_module, "MAX_PENDING", 2)
    check = await add("api", http_target.url("/ok"))
    writer = ResultWriter()
    now = timezone.now()
    for n in range(3):
        writer.add(Outcome(check, ProbeResult.success(1.0), checked_at=now + timedelta(seconds=n)))
    # Another connection to the test database holds its write lock: every store fails.
    holder = sqlite3.connect(settings.DATABASES["default"]["NAME"], uri=True, isolation_level=None)
    try:
        holder.execute("begin immediate")
        holder.execute("delete from connections_app_runner")
        assert await writer.flush() == []
    finally:
        holder.execute("rollback")
        holder.close()
    assert (writer.pending, writer.dropped) == (2, 1)  # the oldest went first
    assert "1 result dropped: the database has been away" in caplog.text
    stored = await writer.flush()
    assert [o.checked_at for o in stored] == [now + timedelta(seconds=n) for n in (1, 2)]


async def test_runs_an_overdue_check_never_made_up_for_are_counted(only, http_target):
    check = await add("overdue", http_target.url("/ok"), interval=10)
    due = timezone.now() - timedelta(seconds=35)  # three whole intervals passed since
    await HealthCheck.objects.filter(pk=check.pk).aupdate(next_due_at=due)
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        assert await monitor.start_due() == 1
        await monitor.drain()
    assert monitor.stats.runs_missed == 3
    await asyncio.to_thread(report, monitor.stats, monitor.figures())
    assert (await Runner.objects.aget()).runs_missed == 3


@pytest.mark.skipif(
    not settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"),
    reason="holds the write lock of the SQLite test database (the suite's default)",
)
async def test_a_check_run_while_claims_failed_is_not_run_again_when_they_work(only, http_target):
    check = await add("api", http_target.url("/ok"), interval=60)
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        assert await monitor.start_due() == 1
        await monitor.drain()
        holder = sqlite3.connect(
            settings.DATABASES["default"]["NAME"], uri=True, isolation_level=None
        )
        try:
            holder.execute("begin immediate")
            holder.execute("delete from connections_app_runner")
            assert await monitor.start_due() == 0  # the claim fails: the runner goes on alone
        finally:
            holder.execute("rollback")
            holder.close()
        # As after an outage: the stored due time is from before it, the runner's is ahead.
        stale = timezone.now() - timedelta(seconds=1)
        await HealthCheck.objects.filter(pk=check.pk).aupdate(next_due_at=stale)
        assert await monitor.start_due() == 0
        assert monitor.stats.runs_missed == 0
        await check.arefresh_from_db()
        assert check.next_due_at > timezone.now()  # due again later, from the claim
    assert http_target.hits["/ok"] == 1
