import asyncio
import calendar
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from connections_app import recent_points
from connections_app.models import CheckResult, HealthCheck
from realtime.limits import Limits
from realtime.protocol import EVERY
from realtime.snapshot import SharedBuilds, Snapshot, build_snapshot

pytestmark = pytest.mark.django_db(transaction=True)


def add_checks(count: int, results_each: int = 3, first: int = 0) -> None:
    now = timezone.now()
    for n in range(first, first + count):
        check = HealthCheck.objects.create(name=f"c{n}", target=f"127.0.0.1:{1000 + n}", kind="tcp")
        CheckResult.objects.bulk_create(
            CheckResult(health_check=check, checked_at=now - timedelta(seconds=i), ok=True)
            for i in range(results_each)
        )


def checks_of(snapshot: Snapshot) -> list[dict]:
    """Every check of a snapshot, the first frame's and the parts'."""
    texts = snapshot.first + [text for part in snapshot.parts for text in part]
    return [json.loads(text) for text in texts]


def test_it_costs_the_same_queries_for_two_checks_or_twenty(django_assert_num_queries):
    # The checks with their recent results, their uptime and latency (three reads: totals
    # with the open periods' rollups, every check's id, sums for checks without totals), the
    # error stats, the failed alerts, the other clients.
    add_checks(2)
    with django_assert_num_queries(7):
        assert len(checks_of(build_snapshot(EVERY, Limits()))) >= 2
    add_checks(18, first=2)
    with django_assert_num_queries(7):
        assert len(checks_of(build_snapshot(EVERY, Limits()))) >= 20


def test_a_result_older_than_a_day_is_in_the_sparkline_but_not_the_uptime():
    # A paused check still shows how it last behaved; its 24 h uptime has no result to count.
    check = HealthCheck.objects.create(name="old", target="127.0.0.1:1", kind="tcp")
    at = timezone.now() - timedelta(days=2)
    CheckResult.objects.create(health_check=check, checked_at=at, ok=False, latency_ms=2.5)
    recent_points.fill(HealthCheck, CheckResult)
    row = next(c for c in checks_of(build_snapshot(EVERY, Limits())) if c["name"] == "old")
    # Milliseconds since the epoch in integers (a float product can land 1 ms short).
    millis = calendar.timegm(at.utctimetuple()) * 1000 + at.microsecond // 1000
    assert row["recent"] == [[millis, 0, 2.5]]
    assert row["uptime_24h"] is None


def test_the_sparkline_is_cut_to_the_points_the_limits_ask_for():
    add_checks(1, results_each=12)
    recent_points.fill(HealthCheck, CheckResult)
    (row,) = checks_of(build_snapshot(EVERY, Limits(sparkline_points=5)))
    assert len(row["recent"]) == 5
    assert [p[0] for p in row["recent"]] == sorted(p[0] for p in row["recent"])


async def test_clients_asking_at_once_share_one_build():
    await sync_to_async(add_checks)(2)
    builds = SharedBuilds()
    bodies = await asyncio.gather(*(builds.bodies(EVERY, Limits()) for _ in range(10)))
    assert len({id(body) for body in bodies}) == 1  # one build, one string for all


async def test_a_client_asking_after_a_build_started_reading_gets_a_new_one():
    builds = SharedBuilds()
    first = asyncio.ensure_future(builds.bodies(EVERY, Limits()))
    await asyncio.sleep(0)  # the build has started reading the database
    second = asyncio.ensure_future(builds.bodies(EVERY, Limits()))
    await asyncio.gather(first, second)
    assert builds._builds == {}


def add_many(count: int, results_each: int) -> None:
    """``count`` checks, a tenth of them down, each with ``results_each`` recent results."""
    now = timezone.now()
    checks = HealthCheck.objects.bulk_create(
        HealthCheck(
            name=f"check-{n:05d}",
            target=f"127.0.0.1:{1000 + n}",
            kind="tcp",
            status="down" if n % 10 == 0 else "up",
        )
        for n in range(count)
    )
    CheckResult.objects.bulk_create(
        CheckResult(health_check=c, checked_at=now - timedelta(seconds=10 * i), ok=True)
        for c in checks
        for i in range(results_each)
    )
    recent_points.fill(HealthCheck, CheckResult)  # results written in bulk: their points too


async def test_2000_checks_arrive_in_frames_under_the_bound_worst_first(staff_cookie, settings):
    from tests.realtime.conftest import connected, receive

    bound = 64 * 1024
    settings.DASHBOARD_LIMITS = {"snapshot_frame_bytes": bound, "snapshot_first_checks": 100}
    # The only checks: the migrations' self-checks are there or not, by which tests ran before.
    await HealthCheck.objects.all().adelete()
    await sync_to_async(add_many)(2000, 5)
    socket, snapshot = await connected(staff_cookie)
    frames = [snapshot]
    for _ in range(snapshot["data"]["parts"]):
        frames.append(await receive(socket))
    await socket.disconnect()
    sizes = [len(json.dumps(f, separators=(",", ":")).encode()) for f in frames]
    assert max(sizes) <= bound
    assert [f["type"] for f in frames[1:]] == ["snapshot.part"] * (len(frames) - 1)
    assert [f["data"]["part"] for f in frames[1:]] == list(range(1, len(frames)))
    names = [c["name"] for f in frames for c in f["data"]["checks"]]
    assert sorted(names) == sorted(f"check-{n:05d}" for n in range(2000))  # each once
    head = snapshot["data"]
    assert (head["total"], head["counts"], head["status"]) == (
        2000,
        {"down": 200, "up": 1800},
        "down",
    )
    # Worst first: the first frame shows the checks that are down.
    assert {c["status"] for c in head["checks"]} == {"down"} and len(head["checks"]) <= 100
    assert all(len(c["recent"]) == 5 for f in frames for c in f["data"]["checks"])


def test_a_snapshot_of_any_size_keeps_every_frame_under_the_default_bound():
    add_many(400, 30)  # about 350 checks made one frame over daphne's 1 MiB before
    snapshot = build_snapshot(EVERY, Limits())
    bodies = snapshot.bodies()
    assert max(len(b.encode()) for b in bodies) <= Limits().snapshot_frame_bytes
    assert len(checks_of(snapshot)) >= 400
