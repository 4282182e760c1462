"""The stored state machine: results move a check's state in the transaction that stores them,
every change of status is a ``StateChange`` row, pauses and maintenance windows too.

Times are given explicitly (results carry their own ``checked_at``; windows are judged at an
``at``): no test sleeps through a threshold or a window.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone

from connections_app.connection_manager import ConnectionManager
from connections_app.errors import ErrorCategory
from connections_app.maintenance import MaintenanceWindow
from connections_app.models import (
    DEGRADED,
    DOWN,
    MAINTENANCE,
    PAUSED,
    UNKNOWN,
    UP,
    CheckResult,
    HealthCheck,
    StateChange,
)
from connections_app.monitor import Monitor
from connections_app.probes import ProbeResult
from connections_app.results import Outcome, store_outcomes
from connections_app.state import FlapRule, apply_maintenance, rebuild_from_results, switch

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # a Monday
STEADY = FlapRule(changes=100, window=timedelta(minutes=30))


def make_check(**fields) -> HealthCheck:
    values = {"name": "api", "kind": "http", "target": "http://127.0.0.1:9/x"} | fields
    return HealthCheck.objects.create(**values)


def result(ok: bool, latency_ms: float = 5.0) -> ProbeResult:
    if ok:
        return ProbeResult.success(latency_ms)
    return ProbeResult.failure(ErrorCategory.REFUSED, "refused", latency_ms)


def feed(
    check: HealthCheck,
    oks: list[bool],
    start: datetime = T0,
    step: float = 60,
    latency_ms: float = 5.0,
    rule: FlapRule = STEADY,
) -> list[StateChange]:
    """Store one result per ``oks`` item, ``step`` seconds apart, each in its own batch."""
    changes = []
    for n, ok in enumerate(oks):
        at = start + timedelta(seconds=n * step)
        outcome = Outcome(check, result(ok, latency_ms), checked_at=at)
        changes += store_outcomes([outcome], rule).changes
    check.refresh_from_db()
    return changes


def moves(changes) -> list[tuple[str, str]]:
    return [(c.from_status, c.to_status) for c in changes]


@pytest.mark.parametrize(
    ("oks", "threshold", "expected"),
    [
        ([True], 3, UP),
        ([False, False, True], 3, UP),
        ([True, False], 3, DEGRADED),
        ([True, False, False], 3, DEGRADED),
        ([True, False, False, False], 3, DOWN),
        ([False], 1, DOWN),
        ([False] * 5, 3, DOWN),
    ],
)
def test_results_move_the_stored_status(oks, threshold, expected):
    check = make_check(failures_before_down=threshold)
    feed(check, oks)
    assert check.status == check.health == expected
    assert HealthCheck.objects.filter(status=expected).get() == check  # a plain lookup


def test_every_change_of_status_is_a_row_with_its_reason_and_result():
    check = make_check(failures_before_down=2)
    changes = feed(check, [True, False, False, False, True])
    assert moves(changes) == [(UNKNOWN, UP), (UP, DEGRADED), (DEGRADED, DOWN), (DOWN, UP)]
    down = StateChange.objects.get(to_status=DOWN)
    assert (down.reason_category, down.at) == ("refused", T0 + timedelta(seconds=120))
    assert down.result_checked_at == down.at
    assert CheckResult.objects.filter(health_check=check, checked_at=down.result_checked_at)
    assert check.status_since == T0 + timedelta(seconds=240)
    assert (check.failures_in_a_row, check.successes_in_a_row) == (0, 1)
    assert check.last_error_category == ""


def test_a_down_check_needs_its_successes_in_a_row_to_be_up_again():
    check = make_check(failures_before_down=1, successes_before_up=3)
    feed(check, [False, True, True])
    assert check.status == DOWN and check.successes_in_a_row == 2
    feed(check, [False, True, True, True], start=T0 + timedelta(hours=1))
    assert check.status == UP
    assert moves(StateChange.objects.order_by("at")) == [(UNKNOWN, DOWN), (DOWN, UP)]


def test_a_slow_success_is_degraded():
    check = make_check(degraded_after_ms=100)
    feed(check, [True], latency_ms=150)
    assert check.status == DEGRADED and check.failures_in_a_row == 0
    feed(check, [True], start=T0 + timedelta(minutes=5), latency_ms=50)
    assert check.status == UP


def test_a_batch_stored_twice_moves_the_state_once():
    check = make_check(failures_before_down=2)
    batch = [Outcome(check, result(False), checked_at=T0 + timedelta(seconds=n)) for n in (1, 2)]
    first = store_outcomes(batch, STEADY)
    again = store_outcomes(batch, STEADY)
    check.refresh_from_db()
    assert moves(first.changes) == [(UNKNOWN, DEGRADED), (DEGRADED, DOWN)]
    assert again.changes == [] and check.failures_in_a_row == 2
    assert CheckResult.objects.filter(health_check=check).count() == 2


def test_an_older_result_is_stored_but_does_not_move_the_state():
    check = make_check(failures_before_down=1)
    feed(check, [True], start=T0 + timedelta(minutes=1))
    feed(check, [False], start=T0)  # came late, from a slower runner
    assert check.status == UP
    assert CheckResult.objects.filter(health_check=check).count() == 2


def test_a_deleted_check_loses_no_other_result():
    kept, gone = make_check(name="kept"), make_check(name="gone")
    batch = [Outcome(kept, result(True), checked_at=T0), Outcome(gone, result(True), checked_at=T0)]
    gone.delete()
    store_outcomes(batch, STEADY)
    assert batch[0].status == UP and batch[1].status == ""
    assert CheckResult.objects.count() == 1


def test_flapping_is_marked_after_too_many_changes_and_cleared_after_a_stable_window():
    rule = FlapRule(changes=3, window=timedelta(minutes=30))
    check = make_check(failures_before_down=1)
    feed(check, [True, False, True], rule=rule)
    assert not check.flapping  # 3 changes: not more than 3
    feed(check, [False], start=T0 + timedelta(minutes=3), rule=rule)
    assert check.flapping  # the 4th change within 30 minutes
    feed(check, [False] * 29, start=T0 + timedelta(minutes=4), rule=rule)
    assert check.flapping  # stable 29 minutes
    feed(check, [False], start=T0 + timedelta(minutes=33), rule=rule)
    assert not check.flapping and check.status == DOWN


def test_pause_and_resume_are_changes_too():
    check = make_check()
    feed(check, [True])
    switch([check.pk], enabled=False, at=T0 + timedelta(hours=1))
    check.refresh_from_db()
    assert (check.status, check.enabled) == (PAUSED, False)
    switch([check.pk], enabled=True, at=T0 + timedelta(hours=2))
    check.refresh_from_db()
    # Resumed afresh: what the results said before the pause is too old to judge by.
    assert (check.status, check.health, check.next_due_at) == (UNKNOWN, UNKNOWN, None)
    assert moves(StateChange.objects.order_by("at")) == [
        (UNKNOWN, UP),
        (UP, PAUSED),
        (PAUSED, UNKNOWN),
    ]


def test_a_form_that_switches_a_check_off_pauses_it_and_never_writes_stale_state():
    check = make_check()
    stale = HealthCheck.objects.get(pk=check.pk)  # loaded by a form a minute ago
    feed(check, [True])
    stale.enabled = False
    stale.save()
    check.refresh_from_db()
    assert check.status == PAUSED
    assert check.last_checked_at == T0  # the runner's write survived the form's save
    assert moves(StateChange.objects.order_by("at", "pk"))[-1] == (UP, PAUSED)


def test_a_stale_form_that_leaves_a_check_off_keeps_it_paused():
    check = make_check(enabled=False)
    stale = HealthCheck.objects.get(pk=check.pk)  # PAUSED when the form was loaded
    switch([check.pk], enabled=True)  # resumed meanwhile by the admin action
    feed(check, [True])
    stale.name = "api v2"  # the form saves its other edit, and enabled=False as it showed it
    stale.save()
    check.refresh_from_db()
    assert (check.enabled, check.status) == (False, PAUSED)


def test_pauses_and_resumes_do_not_make_a_check_flapping():
    rule = FlapRule(changes=2, window=timedelta(minutes=30))
    check = make_check()
    feed(check, [True], rule=rule)
    for minute in (1, 2, 3):
        switch([check.pk], enabled=False, at=T0 + timedelta(minutes=minute))
        switch([check.pk], enabled=True, at=T0 + timedelta(minutes=minute, seconds=30))
    feed(check, [True], start=T0 + timedelta(minutes=4), rule=rule)
    assert not check.flapping


def weekly_window(**fields) -> MaintenanceWindow:
    values = {
        "name": "patch night",
        "schedule": "weekly",
        "weekdays": "0",  # Monday
        "start_time": time(13, 0),
        "duration_minutes": 60,
        "time_zone": "Europe/Berlin",  # 13:00 in Berlin is 12:00 UTC in winter
        "all_checks": True,
    }
    window = MaintenanceWindow(**(values | fields))
    window.full_clean()
    window.save()
    return window


def test_a_weekly_window_shows_maintenance_and_marks_what_changes_inside():
    weekly_window()
    check = make_check(failures_before_down=1)
    feed(check, [True], start=T0 - timedelta(minutes=5))
    assert check.status == UP
    changes = feed(check, [False, False, True, False], start=T0 + timedelta(minutes=10), step=600)
    assert check.status == MAINTENANCE and check.health == DOWN
    # "since" is when the shown status changed, not when the results changed inside it.
    assert check.status_since == T0 + timedelta(minutes=10)
    assert [(c.from_status, c.to_status, c.during_maintenance) for c in changes] == [
        (UP, DOWN, True),
        (UP, MAINTENANCE, True),
        (DOWN, UP, True),
        (UP, DOWN, True),
    ]
    after = feed(check, [False], start=T0 + timedelta(minutes=61))
    assert check.status == DOWN
    assert [(c.from_status, c.to_status, c.during_maintenance) for c in after] == [
        (MAINTENANCE, DOWN, False)
    ]


def test_a_window_begins_and_ends_without_waiting_for_a_result():
    weekly_window(all_checks=False, tags="web")
    check = make_check(tags="web")
    feed(check, [True], start=T0 - timedelta(minutes=5))
    assert moves(apply_maintenance(T0 + timedelta(minutes=1))) == [(UP, MAINTENANCE)]
    assert apply_maintenance(T0 + timedelta(minutes=2)) == []  # nothing more to move
    assert moves(apply_maintenance(T0 + timedelta(minutes=61))) == [(MAINTENANCE, UP)]
    next_week = apply_maintenance(T0 + timedelta(days=7, minutes=1))
    assert moves(next_week) == [(UP, MAINTENANCE)]
    check.refresh_from_db()
    assert check.status == MAINTENANCE


def test_a_check_resumed_inside_a_window_shows_maintenance_at_once():
    weekly_window()
    check = make_check(enabled=False)
    (change,) = switch([check.pk], enabled=True, at=T0 + timedelta(minutes=5))
    assert (change.from_status, change.to_status, change.during_maintenance) == (
        PAUSED,
        MAINTENANCE,
        True,
    )


def test_the_stored_state_can_be_rebuilt_from_the_results():
    check = make_check(failures_before_down=2)
    now = timezone.now()
    for age, ok in enumerate([False, False, False, True]):  # newest first
        CheckResult.objects.create(health_check=check, ok=ok, checked_at=now - timedelta(age))
    assert rebuild_from_results() >= 1
    check.refresh_from_db()
    assert (check.status, check.failures_in_a_row) == (DOWN, 3)
    assert check.status_since == now - timedelta(2)
    assert check.last_checked_at == now


@pytest.mark.django_db(transaction=True)
async def test_real_targets_move_the_state_up_down_and_back(http_target):
    url = http_target.url("/switch/api")
    check = await HealthCheck.objects.acreate(
        name="api", target=url, failures_before_down=2, timeout=2
    )

    async def run() -> str:
        async with ConnectionManager() as manager:
            (outcome,) = await Monitor(manager).run_once([check], asyncio.Event())
        return outcome.status

    assert await run() == UP
    http_target.switch("api", 503)
    assert [await run(), await run()] == [DEGRADED, DOWN]
    http_target.switch("api", 200)
    assert await run() == UP
    moved = [(c.from_status, c.to_status) async for c in StateChange.objects.order_by("at")]
    assert moved == [(UNKNOWN, UP), (UP, DEGRADED), (DEGRADED, DOWN), (DOWN, UP)]


@pytest.mark.django_db(transaction=True)
async def test_an_upside_down_check_passes_while_its_port_stays_closed():
    # Bound and not listening: refused, and no other process can take the port meanwhile.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    port = held.getsockname()[1]
    check = await HealthCheck.objects.acreate(
        name="closed", kind="tcp", target=f"127.0.0.1:{port}", upside_down=True,
        failures_before_down=1, timeout=2,
    )  # fmt: skip

    async def run():
        async with ConnectionManager() as manager:
            (outcome,) = await Monitor(manager).run_once([check], asyncio.Event())
        return outcome

    with held:
        assert (await run()).status == UP
        held.listen()
        opened = await run()
    assert opened.status == DOWN
    assert opened.result.error_category == "answered"


def test_a_success_with_a_warning_is_degraded_and_counts_as_a_success():
    check = make_check(failures_before_down=1)
    warned = ProbeResult.success(5.0).warn(ErrorCategory.TLS_EXPIRING, "expires in 3 days")
    changes = store_outcomes([Outcome(check, warned, checked_at=T0)], STEADY).changes
    check.refresh_from_db()
    assert (check.status, check.successes_in_a_row, check.failures_in_a_row) == (DEGRADED, 1, 0)
    assert (changes[0].to_status, changes[0].reason_category) == (DEGRADED, "tls_expiring")
    feed(check, [True], start=T0 + timedelta(minutes=1))
    assert check.status == UP and check.last_error_category == ""
