"""The status page's history figures, from raw results in SQL, on a clock the test sets."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from connections_app.models import CheckResult, HealthCheck
from connections_app.public_history import daily_bars, uptime_windows

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.fixture
def check(db) -> HealthCheck:
    return HealthCheck.objects.create(name="api", kind="tcp", target="127.0.0.1:1")


def results(check: HealthCheck, *aged: tuple[timedelta, bool]) -> None:
    CheckResult.objects.bulk_create(
        CheckResult(health_check=check, checked_at=NOW - age, ok=ok) for age, ok in aged
    )


def test_uptime_over_each_window_counts_only_its_own_results(check):
    hour, day = timedelta(hours=1), timedelta(days=1)
    results(
        check,
        (hour, True), (2 * hour, False),  # last 24 h: 1 of 2
        (3 * day, True), (4 * day, True),  # 7 d: 3 of 4
        (20 * day, False), (21 * day, False),  # 30 d: 3 of 6
        (60 * day, True), (61 * day, True),  # 90 d: 5 of 8
        (91 * day, False),  # outside every window
        (-hour, False),  # after "now": not yet
    )
    assert uptime_windows([check.pk], now=NOW) == {
        check.pk: {"24h": 50.0, "7d": 75.0, "30d": 50.0, "90d": 62.5}
    }


def test_a_check_without_results_has_none_in_every_window(check):
    other = HealthCheck.objects.create(name="quiet", kind="tcp", target="127.0.0.1:2")
    results(check, (timedelta(days=10), True))
    windows = uptime_windows([check.pk, other.pk], now=NOW)
    assert windows[other.pk] == {"24h": None, "7d": None, "30d": None, "90d": None}
    assert windows[check.pk] == {"24h": None, "7d": None, "30d": 100.0, "90d": 100.0}
    assert uptime_windows([], now=NOW) == {}


def test_daily_bars_have_one_entry_per_utc_day_oldest_first(check):
    results(
        check,
        (timedelta(hours=1), True),  # today, 11:00
        (timedelta(hours=11, minutes=59), False),  # today, 00:01
        (timedelta(hours=12, minutes=1), True),  # yesterday, 23:59
        (timedelta(days=2), False),
        (timedelta(days=3), True),  # outside three days
    )
    bars = daily_bars([check.pk], days=3, now=NOW)[check.pk]
    assert [bar["day"] for bar in bars] == [date(2026, 11, 28), date(2026, 11, 29), NOW.date()]
    assert bars[0] == {"day": date(2026, 11, 28), "results": 1, "failures": 1, "uptime": 0.0}
    assert bars[1] == {"day": date(2026, 11, 29), "results": 1, "failures": 0, "uptime": 100.0}
    assert bars[2] == {"day": NOW.date(), "results": 2, "failures": 1, "uptime": 50.0}


def test_a_day_without_results_is_in_the_bar_with_no_uptime(check):
    bars = daily_bars([check.pk], now=NOW)[check.pk]
    assert len(bars) == 90
    assert bars[0]["day"] == NOW.date() - timedelta(days=89)
    assert all(bar == {**bar, "results": 0, "failures": 0, "uptime": None} for bar in bars)


def test_each_figure_is_one_query(check, django_assert_num_queries):
    other = HealthCheck.objects.create(name="quiet", kind="tcp", target="127.0.0.1:2")
    results(check, (timedelta(hours=1), True), (timedelta(days=5), False))
    with django_assert_num_queries(1):
        daily_bars([check.pk, other.pk], now=NOW)
    with django_assert_num_queries(1):
        uptime_windows([check.pk, other.pk], now=NOW)
