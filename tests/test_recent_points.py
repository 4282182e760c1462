"""A check's newest results kept on its row for the sparkline (``recent_points``): written with
the results, the newest 30 kept, the same after a batch stored twice, and as a rebuild from the
stored results would make them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connections_app import recent_points
from connections_app.models import CheckResult, HealthCheck
from connections_app.results import Outcome, store_outcomes
from tests.test_state import T0, make_check, result

pytestmark = pytest.mark.django_db


def stored_points(check: HealthCheck) -> list[list]:
    check.refresh_from_db()
    return json.loads(check.recent)


def test_results_stored_become_points_newest_last_and_only_30_kept():
    check = make_check()
    outcomes = [
        Outcome(
            check, result(n % 3 != 0, latency_ms=n + 0.125), checked_at=T0 + timedelta(seconds=n)
        )
        for n in range(35)
    ]
    store_outcomes(outcomes[:20])
    store_outcomes(outcomes[20:])
    points = stored_points(check)
    assert len(points) == recent_points.KEEP == 30
    first_kept = T0 + timedelta(seconds=5)
    assert points[0] == [int(first_kept.timestamp() * 1000), 1, 5.12]
    assert points[-1][0] == int((T0 + timedelta(seconds=34)).timestamp() * 1000)
    assert [p[0] for p in points] == sorted(p[0] for p in points)


def test_a_batch_stored_twice_adds_its_points_once():
    check = make_check()
    batch = [Outcome(check, result(True), checked_at=T0 + timedelta(seconds=n)) for n in range(3)]
    store_outcomes(batch)
    store_outcomes(batch)  # a retry after a commit whose outcome was unknown
    assert len(stored_points(check)) == 3


def test_fill_makes_what_storing_made():
    check = make_check()
    store_outcomes(
        [
            Outcome(check, result(n % 2 == 0), checked_at=T0 + timedelta(minutes=n))
            for n in range(40)
        ]
    )
    written = stored_points(check)
    HealthCheck.objects.filter(pk=check.pk).update(recent="[]")
    assert recent_points.fill(HealthCheck, CheckResult) >= 1
    assert stored_points(check) == written


def test_a_failure_without_latency_is_null():
    at = datetime(2026, 1, 2, 3, 4, 5, 678_999, tzinfo=UTC)
    assert recent_points.point(at, False, None) == f"[{int(at.timestamp()) * 1000 + 678},0,null]"


points = st.lists(
    st.tuples(
        st.integers(0, 2**41), st.booleans(), st.none() | st.floats(0, 1e6, allow_nan=False)
    ).map(lambda p: f"[{p[0]},{int(p[1])},{json.dumps(p[2])}]"),
    max_size=40,
)


@settings(deadline=None)  # a busy machine's pause is not a slow function
@given(points, points, st.integers(1, 40))
def test_adding_keeps_the_newest_as_a_json_list_would(old, new, keep):
    text = "[" + ",".join(old) + "]"
    expected = (json.loads(text) + [json.loads(p) for p in new])[-keep:]
    added = recent_points.add(text, new, keep)
    assert json.loads(added) == expected
    assert json.loads(recent_points.newest(added, 3)) == expected[-3:]
