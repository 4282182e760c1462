"""The runner's units of work, in-process, against real loopback targets and the test database.

``Monitor.start_due`` claims and starts, ``Monitor.drain`` waits for the probes,
``ResultWriter.flush`` stores; ``run_forever`` only repeats them. What needs a process of its
own (signals, exit codes) is in test_runchecks.py.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from connections_app import rollups
from connections_app.connection_manager import ConnectionManager
from connections_app.error_handler import report
from connections_app.models import DEGRADED, UP, CheckResult, ErrorStat, HealthCheck
from connections_app.monitor import ERROR_STATS_INTERVAL, PRUNE_INTERVAL, Housekeeping, Monitor
from connections_app.rollups import ResultRollup
from tests.conftest import FakeClock, refusing_port
from tests.http_targets import HttpTarget
from tests.realtime.helpers import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def only(db) -> None:
    await HealthCheck.objects.all().adelete()  # the self-checks are tested on their own


async def add(name: str, target: str, kind: str = "http", **fields) -> HealthCheck:
    values = {"interval": 10, "timeout": 2} | fields
    return await HealthCheck.objects.acreate(name=name, kind=kind, target=target, **values)


async def run_due(monitor: Monitor) -> tuple[int, list]:
    started = await monitor.start_due()
    await monitor.drain()
    return started, await monitor.writer.flush()


async def test_due_checks_are_claimed_once_and_their_results_stored(only, http_target):
    api = await add("api", http_target.url("/ok"))
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        before_claim = timezone.now()
        started, stored = await run_due(monitor)
        after_claim = timezone.now()
        again, _ = await run_due(monitor)
    assert (started, again) == (1, 0)  # claimed: due again only after its interval
    await api.arefresh_from_db()
    assert api.status == UP and stored[0].status == UP
    # A new check's second run is at its own phase of the interval, at least half an interval
    # after the claim: from half to one and a half intervals after it.
    half, one_and_a_half = timedelta(seconds=5), timedelta(seconds=15)
    assert before_claim + half <= api.next_due_at < after_claim + one_and_a_half
    assert await CheckResult.objects.filter(health_check=api).acount() == 1


async def test_every_failure_becomes_a_categorised_result(only, http_target: HttpTarget):
    checks = {
        "stall": await add("stall", http_target.url("/stall"), timeout=0.5),
        "reset": await add("reset", http_target.url("/reset")),
        "dns": await add("dns", "http://no-such-host.invalid/"),
        "tls": await add("tls", http_target.url("/ok").replace("http://", "https://")),
        "refused": await add("refused", f"http://127.0.0.1:{refusing_port()}/"),
        "missing text": await add("missing text", http_target.url("/ok"), expected_body="never"),
    }
    async with ConnectionManager() as manager:
        outcomes = await Monitor(manager).run_once(checks.values(), asyncio.Event())
    categories = {o.check.name: o.result.error_category for o in outcomes}
    assert categories == {
        "stall": "timeout",
        "reset": "reset",
        "dns": "dns",
        "tls": "tls",
        "refused": "refused",
        "missing text": "body_mismatch",
    }
    assert {o.status for o in outcomes} == {DEGRADED}  # one failure each; DOWN needs three
    assert await CheckResult.objects.acount() == len(checks)
    # Every failure reached the error statistics (run_once flushed them).
    failures = [s async for s in ErrorStat.objects.filter(operation="check.http")]
    assert {s.endpoint for s in failures} == set(checks)


async def test_a_tcp_check_passes_against_a_listening_port(only):
    with socket.create_server(("127.0.0.1", 0)) as server:
        tcp = await add("tcp", f"127.0.0.1:{server.getsockname()[1]}", kind="tcp")
        async with ConnectionManager() as manager:
            (outcome,) = await Monitor(manager).run_once([tcp], asyncio.Event())
    assert outcome.status == UP


async def test_a_check_deleted_while_it_runs_does_not_block_the_others(only, http_target):
    kept = await add("kept", http_target.url("/ok"))
    gone = await add("gone", http_target.url("/slow/0.5"))
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        running = asyncio.ensure_future(monitor.run_once([kept, gone], asyncio.Event()))
        await wait_until(lambda: http_target.hits.get("/slow/0.5", 0) > 0)
        await gone.adelete()
        outcomes = await running
    assert [o.check.name for o in outcomes] == ["kept"]
    assert [r.health_check_id async for r in CheckResult.objects.all()] == [kept.pk]


async def test_run_forever_checks_at_intervals_until_stopped(only, http_target):
    api = await add("api", http_target.url("/ok"), interval=1, timeout=0.5)
    stop = asyncio.Event()
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        running = asyncio.ensure_future(monitor.run_forever(stop))
        await wait_until(lambda: http_target.hits.get("/ok", 0) >= 2, within=10)
        stop.set()
        await asyncio.wait_for(running, timeout=10)
    stored = await CheckResult.objects.filter(health_check=api).acount()
    assert stored == http_target.hits["/ok"] >= 2  # every run stored, after the stop too
    assert monitor.writer.pending == 0


async def test_housekeeping_runs_each_chore_on_its_own_period(only, settings):
    settings.RESULT_RETENTION_DAYS = 1
    settings.ROLLUP_RETENTION_DAYS = 1
    api = await add("api", "http://127.0.0.1:9/")
    old = timezone.now() - timedelta(days=2)
    await CheckResult.objects.acreate(health_check=api, ok=True, checked_at=old)
    await sync_to_async(rollups.rebuild)()  # an hour and a day of 2 days ago
    report(ConnectionRefusedError("refused"), "housekeeping.test", "here")
    clock = FakeClock()
    chores = Housekeeping(clock)
    await chores.run_due()
    assert not await ErrorStat.objects.filter(operation="housekeeping.test").aexists()
    clock.now += ERROR_STATS_INTERVAL
    await chores.run_due()  # the error statistics are due, pruning is not
    assert await ErrorStat.objects.filter(operation="housekeeping.test").aexists()
    assert await CheckResult.objects.acount() == 1
    clock.now += PRUNE_INTERVAL
    await chores.run_due()
    assert await CheckResult.objects.acount() == 0
    # The hourly rollup goes with the retention of rollups; the daily one stays forever.
    periods = [p async for p in ResultRollup.objects.values_list("period", flat=True)]
    assert periods == ["day"]


async def test_a_slow_chore_never_holds_up_the_runners_report(only, monkeypatch):
    import threading

    from connections_app import monitor as monitor_module
    from connections_app.runners import REPORT_INTERVAL, Runner

    # A prune of a long history, held until the test lets it go: meanwhile the runner must
    # go on saying it is alive, or after three missed reports it would look gone.
    pruning, release = threading.Event(), threading.Event()

    def slow_prune() -> int:
        pruning.set()
        release.wait(30)
        return 0

    monkeypatch.setattr(monitor_module, "prune_results", slow_prune)
    clock = FakeClock()
    async with ConnectionManager() as manager:
        chores = Housekeeping(clock, Monitor(manager))
        clock.now += PRUNE_INTERVAL + REPORT_INTERVAL
        stop = asyncio.Event()
        running = asyncio.create_task(chores.run_until(stop))
        try:
            await wait_until(pruning.is_set, within=10)
            for _ in range(100):  # the report comes within a flush interval (1 s)
                if await Runner.objects.aexists():
                    break
                await asyncio.sleep(0.05)
            assert await Runner.objects.aexists(), "no report while the prune ran"
            assert not release.is_set()
        finally:
            release.set()
            stop.set()
            await running
            await chores.close()


async def test_a_window_that_begins_is_stored_logged_and_announced(only, caplog):
    from datetime import time as clock_time

    from connections_app import events
    from connections_app.maintenance import MaintenanceWindow

    api = await add("api", "http://127.0.0.1:9/", tags="web")
    now = timezone.now()
    window = MaintenanceWindow(
        name="now", schedule="once", starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1), tags="web", start_time=clock_time(0),
    )  # fmt: skip
    await window.asave()
    heard = []

    async def listener(event: str, data: dict) -> None:
        heard.append((event, data["name"], data["from"], data["to"]))

    events.subscribe(listener)
    try:
        clock = FakeClock()
        chores = Housekeeping(clock)
        clock.now += ERROR_STATS_INTERVAL
        with caplog.at_level("INFO", logger="connections_app.monitor"):
            await chores.run_due()
    finally:
        events.unsubscribe(listener)
    await api.arefresh_from_db()
    assert api.status == "maintenance"
    assert ("check.status", "api", "unknown", "maintenance") in heard
    assert "check api: unknown -> maintenance" in caplog.text


async def test_drain_cancels_probes_that_outlive_the_grace_and_stores_the_rest(only, http_target):
    quick = await add("quick", http_target.url("/ok"))
    await add("stalled", http_target.url("/stall"), timeout=20, interval=60)
    async with ConnectionManager() as manager:
        monitor = Monitor(manager)
        assert await monitor.start_due() == 2
        await wait_until(lambda: http_target.hits.get("/stall", 0) >= 1)
        await asyncio.wait_for(monitor.drain(grace=0.2), timeout=5)
        stored = await monitor.writer.flush()
    assert monitor.cancelled == 1
    assert [o.check.name for o in stored] == ["quick"]
    assert [r.health_check_id async for r in CheckResult.objects.all()] == [quick.pk]


async def test_a_runner_with_tags_claims_only_checks_with_one_of_them(only, http_target):
    await add("payments", http_target.url("/ok"), tags="prod,payments")
    await add("search", http_target.url("/ok"), tags="search")
    await add("untagged", http_target.url("/ok"))
    async with ConnectionManager() as manager:
        payments_runner = Monitor(manager, tags=["payments"])
        started, stored = await run_due(payments_runner)
        rest_runner = Monitor(manager, tags=["search", "nosuch"])
        rest_started, rest_stored = await run_due(rest_runner)
    assert (started, [o.check.name for o in stored]) == (1, ["payments"])
    assert (rest_started, [o.check.name for o in rest_stored]) == (1, ["search"])
    assert await HealthCheck.objects.filter(next_due_at=None).acount() == 1  # untagged waits
