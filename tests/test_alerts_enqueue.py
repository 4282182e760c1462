"""Which alerts state changes cause: written with the changes, one per change and channel that
applies; none inside a maintenance window, one when flapping begins; reminders while DOWN.
Times are explicit (results carry their own ``checked_at``, reminders an ``at``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections_app.alerts.enqueue import channels_for, enqueue_reminders, enqueue_tests
from connections_app.alerts.models import (
    ALERT_DEGRADED,
    ALERT_DOWN,
    ALERT_FLAPPING,
    ALERT_RECOVERED,
    ALERT_REMINDER,
    ALERT_TEST,
    Alert,
)
from connections_app.models import DOWN, MAINTENANCE, StateChange
from connections_app.results import Outcome, store_outcomes
from connections_app.state import FlapRule, apply_maintenance
from tests.alerting import channel
from tests.test_state import STEADY, T0, feed, make_check, result, weekly_window

pytestmark = pytest.mark.django_db


def sent(**filters) -> list[tuple[str, str]]:
    rows = Alert.objects.filter(**filters).order_by("pk")
    return [(a.channel.name, a.kind) for a in rows.select_related("channel")]


def channels_around(check) -> None:
    """Channels for every check, chosen ones, tags that match (in any case) or not, and one
    switched off."""
    channel("everything", "http://127.0.0.1:9/a")
    channel("chosen", "http://127.0.0.1:9/b", all_checks=False).checks.add(check)
    channel("tagged", "http://127.0.0.1:9/c", all_checks=False, tags="DB web")
    channel("other tags", "http://127.0.0.1:9/d", all_checks=False, tags="web")
    channel("switched off", "http://127.0.0.1:9/e", enabled=False)


def test_a_change_alerts_each_channel_that_applies_once():
    check = make_check(tags="db,prod", failures_before_down=1)
    channels_around(check)
    channel("degraded only", "http://127.0.0.1:9/f", on_down=False, on_recovered=False,
            on_degraded=True)  # fmt: skip
    feed(check, [True, False, True])  # UNKNOWN -> UP (nothing), UP -> DOWN, DOWN -> UP
    down, up = StateChange.objects.filter(to_status=DOWN).get(), StateChange.objects.first()
    assert sorted(sent(state_change=down)) == [
        ("chosen", ALERT_DOWN), ("everything", ALERT_DOWN), ("tagged", ALERT_DOWN)
    ]  # fmt: skip
    assert sorted(sent(state_change=up)) == [
        ("chosen", ALERT_RECOVERED), ("everything", ALERT_RECOVERED), ("tagged", ALERT_RECOVERED)
    ]  # fmt: skip
    assert Alert.objects.count() == 6
    alert = Alert.objects.filter(state_change=down).first()
    assert (alert.health_check, alert.status, alert.attempts) == (check, "pending", 0)


def test_degraded_goes_only_to_channels_that_want_it():
    check = make_check(failures_before_down=3)
    channel("down only", "http://127.0.0.1:9/a")
    channel("degraded too", "http://127.0.0.1:9/b", on_degraded=True)
    feed(check, [True, False])
    assert sent() == [("degraded too", ALERT_DEGRADED)]


def test_a_batch_stored_twice_alerts_once():
    check = make_check(failures_before_down=1)
    channel("ops", "http://127.0.0.1:9/a")
    batch = [Outcome(check, result(False), checked_at=T0)]
    store_outcomes(batch, STEADY)
    store_outcomes(batch, STEADY)
    assert sent() == [("ops", ALERT_DOWN)]


def test_one_query_reads_the_channels_of_a_whole_batch():
    checks = [make_check(name=f"c{i}", failures_before_down=1, tags="db") for i in range(10)]
    for i in range(3):
        channel(f"ch{i}", f"http://127.0.0.1:9/{i}", all_checks=False, tags="db")
    channel("chosen", "http://127.0.0.1:9/x", all_checks=False).checks.add(*checks[:4])
    batch = [Outcome(c, result(False), checked_at=T0) for c in checks]
    with CaptureQueriesContext(connection) as queries:
        store_outcomes(batch, STEADY)
    reads = [q["sql"] for q in queries if "notificationchannel" in q["sql"].lower()]
    assert len(reads) == 1, reads
    assert Alert.objects.count() == 10 * 3 + 4


def test_no_alert_inside_a_maintenance_window_and_one_when_it_ends_on_a_failing_check():
    weekly_window()  # Mondays 12:00-13:00 UTC
    check = make_check(failures_before_down=1)
    channel("ops", "http://127.0.0.1:9/a", on_degraded=True)
    feed(check, [True], start=T0 - timedelta(minutes=5))
    feed(check, [False, True, False], start=T0 + timedelta(minutes=10), step=600)
    assert check.status == MAINTENANCE and check.health == DOWN
    assert sent() == []
    # The window ends before the next result: the housekeeping's move is news too.
    moved = apply_maintenance(T0 + timedelta(minutes=61))
    assert [(c.from_status, c.to_status) for c in moved] == [(MAINTENANCE, DOWN)]
    assert sent(state_change=moved[0]) == [("ops", ALERT_DOWN)]
    assert Alert.objects.count() == 1


def test_flapping_sends_one_flapping_alert_not_one_per_flip():
    rule = FlapRule(changes=3, window=timedelta(minutes=30))
    check = make_check(failures_before_down=1)
    channel("down", "http://127.0.0.1:9/a")
    channel("flapping only", "http://127.0.0.1:9/b", on_down=False, on_recovered=False,
            on_flapping=True)  # fmt: skip
    channel("recovered only", "http://127.0.0.1:9/c", on_down=False)
    feed(check, [True, False, True, False, True, False, True, False], rule=rule)
    assert check.flapping
    assert sent() == [
        ("down", ALERT_DOWN),
        ("down", ALERT_RECOVERED),
        ("recovered only", ALERT_RECOVERED),
        ("down", ALERT_FLAPPING),
        ("flapping only", ALERT_FLAPPING),
    ]
    flapping = Alert.objects.filter(kind=ALERT_FLAPPING).first()
    assert flapping.state_change.to_status == DOWN  # the fourth change, the one that tipped it


def test_reminders_come_at_their_interval_while_down_then_a_recovery():
    now = timezone.now()
    check = make_check(failures_before_down=1)
    channel("ops", "http://127.0.0.1:9/a", remind_every=10)
    channel("no reminders", "http://127.0.0.1:9/b")
    feed(check, [False], start=now)
    assert sent() == [("ops", ALERT_DOWN), ("no reminders", ALERT_DOWN)]
    Alert.objects.update(created_at=now)  # enqueued "now" by the real clock: pin it
    assert enqueue_reminders(now + timedelta(minutes=9)) == []
    assert [a.kind for a in enqueue_reminders(now + timedelta(minutes=10))] == [ALERT_REMINDER]
    assert enqueue_reminders(now + timedelta(minutes=15)) == []
    assert len(enqueue_reminders(now + timedelta(minutes=20))) == 1
    feed(check, [True], start=now + timedelta(minutes=25))
    assert enqueue_reminders(now + timedelta(minutes=40)) == []
    assert sent(channel__name="ops") == [
        ("ops", ALERT_DOWN),
        ("ops", ALERT_REMINDER),
        ("ops", ALERT_REMINDER),
        ("ops", ALERT_RECOVERED),
    ]


def test_no_reminder_for_a_flapping_check():
    now = timezone.now()
    check = make_check(failures_before_down=1)
    channel("ops", "http://127.0.0.1:9/a", remind_every=1)
    feed(check, [False], start=now - timedelta(hours=1))
    check.flapping = True
    check.save(update_fields=["flapping"])
    assert enqueue_reminders(now) == []


def test_a_test_alert_is_one_per_channel():
    a, b = channel("a", "http://127.0.0.1:9/a"), channel("b", "http://127.0.0.1:9/b")
    assert enqueue_tests([a.pk, b.pk]) == 2
    assert sorted(sent()) == [("a", ALERT_TEST), ("b", ALERT_TEST)]
    assert not Alert.objects.filter(health_check__isnull=False).exists()


def test_the_channels_a_check_s_pages_list_are_those_its_changes_alert():
    """One rule for "which channels apply": ``channels_for`` (the admin's and the dashboard's
    check pages) names exactly the channels a change to DOWN alerts."""
    check = make_check(tags="db,prod", failures_before_down=1)
    channels_around(check)
    listed = [c.name for c in channels_for(check)]
    feed(check, [True, False])  # UNKNOWN -> UP, UP -> DOWN
    assert listed == ["chosen", "everything", "tagged"]
    assert sorted(name for name, _kind in sent(kind=ALERT_DOWN)) == listed
