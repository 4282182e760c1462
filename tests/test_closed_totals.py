"""The totals of ended periods behind every list's figures (``closed_totals``): the figures are
the same with them, without them, after a new hour begins and after a result arrives late; the
runner's housekeeping makes them.

Every time is given (results carry their ``checked_at``, reads take ``now``): nothing waits.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async

from connections_app import closed_totals, history
from connections_app.closed_totals import ClosedTotals
from connections_app.monitor import TOTALS_INTERVAL, Housekeeping
from connections_app.rollups import HOUR, period_start
from tests.test_rollups import NOW, make_check, store

pytestmark = pytest.mark.django_db


def straight(ids: list[int], now) -> dict[int, dict]:
    """The figures as the plain grouped queries over every rollup row give them."""
    uptime = history.uptime_windows(ids, now)
    latency = history.latency_percentiles(ids, now - timedelta(hours=24), now)
    empty_uptime = dict.fromkeys(history.WINDOWS)
    empty_latency = dict.fromkeys(history.QUANTILES)
    return {
        pk: {"uptime": uptime.get(pk, empty_uptime), "latency": latency.get(pk, empty_latency)}
        for pk in ids
    }


def history_of_two_checks():
    """Results over 40 days: this hour, earlier today, yesterday, last week, a month ago."""
    api, db = make_check("api"), make_check("db")
    store(
        api,
        (timedelta(minutes=5), True, 12.0),  # this hour (NOW is 12:30)
        (timedelta(hours=2), False, 40.0),  # earlier today
        (timedelta(hours=20), True, 80.0),  # yesterday, inside 24 h
        (timedelta(days=3), True, 900.0),
        (timedelta(days=20), False, 1.0),
        (timedelta(days=40), True, 3.0),
    )
    store(db, (timedelta(hours=1), True, 5.0), (timedelta(hours=26), True, 7000.0))
    quiet = make_check("quiet")  # no result at all
    return [api.pk, db.pk, quiet.pk]


def test_the_figures_are_the_same_with_totals_and_without():
    ids = history_of_two_checks()
    without = history.summary_figures(ids, NOW)
    assert without == straight(ids, NOW)
    closed_totals.refresh(NOW)  # "quiet" gets zeros too, so no list sums it again
    made = ClosedTotals.objects.filter(hour=period_start(NOW, HOUR), pk__in=ids)
    assert made.count() == 3
    assert closed_totals.refresh(NOW) == 0  # nothing left to make
    assert history.summary_figures(ids, NOW) == without
    every = history.summary_figures(None, NOW)  # every check, the self-checks too
    assert {pk: every[pk] for pk in ids} == without
    api = without[ids[0]]
    assert api["uptime"]["24h"] == pytest.approx(100 * 2 / 3, abs=1e-3)
    assert api["uptime"]["90d"] == pytest.approx(100 * 4 / 6, abs=1e-3)


def test_with_totals_a_list_of_every_check_reads_them_in_one_query(django_assert_num_queries):
    ids = history_of_two_checks()
    closed_totals.refresh(NOW)
    # The totals with this hour's and today's rollups joined, and the ids of every check.
    with django_assert_num_queries(2):
        assert set(ids) <= set(history.summary_figures(None, NOW))


def test_totals_of_an_hour_that_has_ended_are_not_used():
    ids = history_of_two_checks()
    closed_totals.refresh(NOW)
    later = NOW + timedelta(hours=23, minutes=45)  # another hour, and another day
    assert history.summary_figures(ids, later) == straight(ids, later)
    closed_totals.refresh(later)
    assert ClosedTotals.objects.filter(hour=period_start(later, HOUR), pk__in=ids).count() == 3
    assert history.summary_figures(ids, later) == straight(ids, later)


def test_a_result_stored_late_drops_its_checks_totals_and_is_counted():
    ids = history_of_two_checks()
    closed_totals.refresh(NOW)
    api = ClosedTotals.objects.get(pk=ids[0]).health_check
    # The runner's buffer after an outage: a failure of three hours ago, stored now.
    store(api, (timedelta(hours=3), False, 10.0))
    assert not ClosedTotals.objects.filter(pk=api.pk).exists()
    assert ClosedTotals.objects.filter(pk=ids[1]).exists()  # the other check's stay
    assert history.summary_figures(ids, NOW) == straight(ids, NOW)
    assert closed_totals.refresh(NOW) == 1
    assert history.summary_figures(ids, NOW) == straight(ids, NOW)


def test_only_a_result_of_an_ended_hour_is_late():
    ids = history_of_two_checks()
    closed_totals.refresh(NOW)
    hour = period_start(NOW, HOUR)

    class Row:
        def __init__(self, check_id, checked_at):
            self.health_check_id, self.checked_at = check_id, checked_at

    assert closed_totals.forget_late([Row(ids[0], hour + timedelta(minutes=1))], now=NOW) == 0
    assert closed_totals.forget_late([Row(ids[0], hour - timedelta(seconds=1))], now=NOW) == 1


@pytest.mark.django_db(transaction=True)  # the chores run in a thread of their own
async def test_the_runners_housekeeping_makes_them_on_its_period():
    ids = await sync_to_async(history_of_two_checks)()
    await ClosedTotals.objects.all().adelete()

    class Clock:
        now = 1000.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    chores = Housekeeping(clock)
    await chores.run_due()  # the first round makes them
    assert await ClosedTotals.objects.filter(pk__in=ids).acount() == 3
    await ClosedTotals.objects.all().adelete()
    await chores.run_due()
    assert await ClosedTotals.objects.acount() == 0  # not due again yet
    clock.now += TOTALS_INTERVAL
    await chores.run_due()
    assert await ClosedTotals.objects.filter(pk__in=ids).acount() == 3
    await chores.close()


def test_rebuilding_the_rollups_drops_every_total():
    # Results loaded in bulk and rolled up again (a benchmark, a test): totals made before
    # would hide them.
    ids = history_of_two_checks()
    closed_totals.refresh(NOW)
    from connections_app import rollups

    rollups.rebuild()
    assert not ClosedTotals.objects.exists()
    assert history.summary_figures(ids, NOW) == straight(ids, NOW)
