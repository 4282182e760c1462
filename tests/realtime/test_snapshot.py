import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from connections_app.models import CheckResult, HealthCheck
from realtime.limits import Limits
from realtime.snapshot import SharedBuilds, build_snapshot

pytestmark = pytest.mark.django_db(transaction=True)


def add_checks(count: int, results_each: int = 3, first: int = 0) -> None:
    now = timezone.now()
    for n in range(first, first + count):
        check = HealthCheck.objects.create(name=f"c{n}", target=f"127.0.0.1:{1000 + n}", kind="tcp")
        CheckResult.objects.bulk_create(
            CheckResult(health_check=check, checked_at=now - timedelta(seconds=i), ok=True)
            for i in range(results_each)
        )


def test_it_costs_the_same_queries_for_two_checks_or_twenty(django_assert_num_queries):
    # The checks, their recent results, their uptime and latency (one read of the rollups),
    # the error stats, the failed alerts, the other clients.
    add_checks(2)
    with django_assert_num_queries(6):
        assert len(build_snapshot(None, Limits())["checks"]) >= 2
    add_checks(18, first=2)
    with django_assert_num_queries(6):
        assert len(build_snapshot(None, Limits())["checks"]) >= 20


def test_results_older_than_a_day_are_not_in_the_sparkline_or_uptime():
    check = HealthCheck.objects.create(name="old", target="127.0.0.1:1", kind="tcp")
    CheckResult.objects.create(
        health_check=check, checked_at=timezone.now() - timedelta(days=2), ok=False
    )
    row = next(c for c in build_snapshot(None, Limits())["checks"] if c["name"] == "old")
    assert row["recent"] == [] and row["uptime_24h"] is None


async def test_clients_asking_at_once_share_one_build():
    await sync_to_async(add_checks)(2)
    builds = SharedBuilds()
    bodies = await asyncio.gather(*(builds.body(None, Limits()) for _ in range(10)))
    assert len({id(body) for body in bodies}) == 1  # one build, one string for all


async def test_a_client_asking_after_a_build_started_reading_gets_a_new_one():
    builds = SharedBuilds()
    first = asyncio.ensure_future(builds.body(None, Limits()))
    await asyncio.sleep(0)  # the build has started reading the database
    second = asyncio.ensure_future(builds.body(None, Limits()))
    await asyncio.gather(first, second)
    assert builds._builds == {}
