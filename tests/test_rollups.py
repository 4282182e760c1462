"""Rollups and the history read from them: written with the results, counted once, read back
as uptime over windows, percentiles, daily bars, hourly series and a histogram.

Every time is given (results carry their ``checked_at``, reads take ``now``): nothing waits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connections_app import history, rollups
from connections_app.errors import ErrorCategory
from connections_app.models import CheckResult, HealthCheck
from connections_app.probes import ProbeResult
from connections_app.results import Outcome, store_outcomes
from connections_app.rollups import DAY, HOUR, ResultRollup

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 30, 12, 30, tzinfo=UTC)


def make_check(name: str = "api") -> HealthCheck:
    return HealthCheck.objects.create(name=name, kind="tcp", target="127.0.0.1:9")


def outcome(check, at: datetime, ok: bool = True, latency: float = 10.0) -> Outcome:
    result = (
        ProbeResult.success(latency)
        if ok
        else ProbeResult.failure(ErrorCategory.REFUSED, "refused", latency)
    )
    return Outcome(check, result, checked_at=at)


def store(check, *specs) -> None:
    """Store ``(age, ok, latency)`` results (age before NOW) in one batch."""
    store_outcomes([outcome(check, NOW - age, ok, latency) for age, ok, latency in specs])


def row(check, period: str, start: datetime) -> ResultRollup:
    return ResultRollup.objects.get(health_check=check, period=period, start=start)


def test_a_batch_adds_its_counts_to_the_hour_and_the_day():
    check = make_check()
    store(check, (timedelta(minutes=1), True, 12.0), (timedelta(minutes=2), False, 5000.0))
    store(check, (timedelta(minutes=3), True, 40.0))
    hour = row(check, HOUR, datetime(2026, 11, 30, 12, tzinfo=UTC))
    day = row(check, DAY, datetime(2026, 11, 30, tzinfo=UTC))
    for r in (hour, day):
        assert (r.results, r.failures, r.latency_count) == (3, 1, 2)
        # Successes only: the failure's 5 s is the timeout, not the target's speed.
        assert (r.latency_sum, r.latency_min, r.latency_max) == (52.0, 12.0, 40.0)
        assert sum(r.bucket_counts()) == 2
        assert r.bucket_counts()[rollups.bucket_of(12.0)] == 1


def test_a_batch_stored_twice_counts_once():
    check = make_check()
    batch = [outcome(check, NOW - timedelta(seconds=s)) for s in (1, 2, 3)]
    store_outcomes(batch)
    store_outcomes(batch)  # a retry after a commit whose outcome was unknown
    store_outcomes([outcome(check, NOW), batch[0]])  # one new, one old
    assert CheckResult.objects.filter(health_check=check).count() == 4
    assert row(check, HOUR, datetime(2026, 11, 30, 12, tzinfo=UTC)).results == 4
    assert row(check, DAY, datetime(2026, 11, 30, tzinfo=UTC)).results == 4


def test_the_same_result_twice_in_one_batch_counts_once():
    check = make_check()
    store_outcomes([outcome(check, NOW), outcome(check, NOW)])
    assert row(check, HOUR, datetime(2026, 11, 30, 12, tzinfo=UTC)).results == 1


def test_results_of_a_deleted_check_add_nothing():
    check = make_check()
    ghost = outcome(check, NOW)
    check.delete()
    store_outcomes([ghost])
    assert not ResultRollup.objects.exists()


def test_rebuilding_from_raw_results_in_sql_gives_the_same_rows():
    check, other = make_check(), make_check("db")
    specs = [(timedelta(minutes=7 * n), n % 5 != 0, 3.0 * n + 0.5) for n in range(40)]
    store(check, *specs)
    store(other, (timedelta(days=3), True, 70000.0), (timedelta(days=3, hours=2), False, 1.0))
    incremental = _all_rows()
    rollups.rebuild()
    assert _all_rows() == incremental


def _all_rows() -> list[tuple]:
    fields = ("health_check_id", "period", "start", "results", "failures", "latency_count")
    fields += ("latency_min", "latency_max", *rollups.BUCKET_COLUMNS)
    rows = ResultRollup.objects.order_by("health_check_id", "period", "start")
    sums = [round(r.latency_sum, 6) for r in rows]
    return list(zip(rows.values_list(*fields), sums, strict=True))


@pytest.mark.parametrize(
    ("latencies", "p50", "p95"),
    [
        ([10.0] * 100, 10.0, 10.0),
        ([float(n) for n in range(1, 101)], 50.0, 95.0),
        ([200.0] * 95 + [9000.0] * 5, 200.0, 200.0),
    ],
)
def test_percentiles_are_read_back_within_a_bucket(latencies, p50, p95):
    counts = [0] * len(rollups.BUCKET_COLUMNS)
    for latency in latencies:
        counts[rollups.bucket_of(latency)] += 1
    low, high = min(latencies), max(latencies)
    for q, exact in ((0.5, p50), (0.95, p95)):
        got = rollups.percentile(counts, q, low, high)
        width = (
            rollups.BOUNDS_MS[rollups.bucket_of(exact)]
            - rollups.BOUNDS_MS[rollups.bucket_of(exact) - 1]
        )
        assert abs(got - exact) <= width


def test_no_latency_has_no_percentile():
    assert rollups.percentile([0] * len(rollups.BUCKET_COLUMNS), 0.5, None, None) is None


def test_uptime_windows_count_whole_periods_back_from_now():
    check, fresh, other = make_check(), make_check("fresh"), make_check("db")
    store(
        check,
        (timedelta(minutes=5), True, 5.0),
        (timedelta(hours=3), False, 5.0),
        (timedelta(days=3), False, 5.0),
        (timedelta(days=20), True, 5.0),
        (timedelta(days=60), True, 5.0),
        (timedelta(days=200), False, 5.0),
    )
    store(other, (timedelta(minutes=1), True, 5.0))
    uptime = history.uptime_windows([check.pk, fresh.pk], now=NOW)
    assert list(uptime) == [check.pk]  # no results, no entry
    assert uptime[check.pk] == pytest.approx(
        {"24h": 50.0, "7d": 100 / 3, "30d": 50.0, "90d": 60.0}, abs=1e-3
    )
    assert history.uptime_windows(None, now=NOW)[other.pk]["90d"] == 100.0
    # 25 h later the results of the last hours left the 24 h window.
    later = NOW + timedelta(hours=25)
    assert history.uptime_windows([check.pk], now=later)[check.pk]["24h"] is None


def test_latency_percentiles_over_hours_and_days():
    check = make_check()
    store(check, *[(timedelta(minutes=n), True, float(n + 1)) for n in range(100)])
    store(check, *[(timedelta(days=5, minutes=n), True, 5000.0) for n in range(5)])
    day = history.latency_percentiles([check.pk], NOW - timedelta(hours=24), now=NOW)[check.pk]
    assert 45 <= day["p50"] <= 55 and 90 <= day["p95"] <= 100 and day["p99"] <= 100
    month = history.latency_percentiles([check.pk], NOW - timedelta(days=30), now=NOW)
    assert month[check.pk]["p99"] > 100  # the slow ones five days ago are in it


def test_daily_bars_have_a_segment_for_every_day():
    check = make_check()
    store(check, (timedelta(0), True, 5.0), (timedelta(days=2), False, 5.0),
          (timedelta(days=2, minutes=1), True, 5.0))  # fmt: skip
    bars = history.daily_bars([check.pk], days=90, now=NOW)[check.pk]
    assert len(bars) == 90
    assert bars[-1] == {"day": "2026-11-30", "results": 1, "failures": 0, "uptime": 100.0}
    assert bars[-3] == {"day": "2026-11-28", "results": 2, "failures": 1, "uptime": 50.0}
    assert bars[-2] == {"day": "2026-11-29", "results": 0, "failures": 0, "uptime": None}


def test_latency_series_is_hourly_oldest_first():
    check = make_check()
    store(check, (timedelta(minutes=1), True, 10.0), (timedelta(minutes=2), True, 30.0),
          (timedelta(hours=2), False, 5.0))  # fmt: skip
    series = history.latency_series(check.pk, NOW - timedelta(hours=24), now=NOW)
    assert [p["t"] for p in series] == [
        int(datetime(2026, 11, 30, 10, tzinfo=UTC).timestamp()),
        int(datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()),
    ]
    assert series[0]["uptime"] == 0.0 and series[0]["p50"] is None
    assert series[1]["avg"] == 20.0 and series[1]["max"] == 30.0 and series[1]["uptime"] == 100.0


def test_latency_histogram_is_cumulative():
    check = make_check()
    store(check, (timedelta(minutes=1), True, 0.5), (timedelta(minutes=2), True, 120.0),
          (timedelta(minutes=3), True, 99999.0), (timedelta(minutes=4), False, 1.0))  # fmt: skip
    found = history.latency_histogram([check.pk])[check.pk]
    assert found["count"] == 3 and found["sum_ms"] == pytest.approx(100119.5)
    buckets = dict(found["buckets"])
    assert buckets[1.0] == 1 and buckets[100.0] == 1 and buckets[150.0] == 2
    assert buckets[60000.0] == 2 and buckets[float("inf")] == 3


def test_pruning_drops_old_hours_and_keeps_every_day():
    check = make_check()
    store(check, (timedelta(days=500), True, 5.0), (timedelta(days=1), True, 5.0))
    assert rollups.prune(days=400, now=NOW) == 1
    periods = sorted(ResultRollup.objects.values_list("period", flat=True))
    assert periods == [DAY, DAY, HOUR]


def test_pruning_reads_the_retention_setting(settings):
    check = make_check()
    store(check, (timedelta(days=3), True, 5.0))
    settings.ROLLUP_RETENTION_DAYS = 2
    assert rollups.prune(now=NOW) == 1


def test_a_batch_of_many_rows_is_upserted_whole():
    checks = [make_check(f"c{n}") for n in range(4)]  # 8 rows: an hour and a day each
    store_outcomes([outcome(c, NOW) for c in checks])
    store_outcomes([outcome(c, NOW + timedelta(seconds=1)) for c in checks])
    assert sorted(ResultRollup.objects.values_list("results", flat=True)) == [2] * 8
