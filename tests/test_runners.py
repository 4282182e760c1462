"""Which runners are live: "gone" follows the heartbeat (``runners.GONE_AFTER``, three missed
reports), a clean stop is "stopped" at once, and rows are deleted after ``FORGET_AFTER``.
The runners' clocks are injected (``report(now=...)``): nothing sleeps."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from connections_app.models import Runner
from connections_app.runners import (
    FORGET_AFTER,
    GONE,
    GONE_AFTER,
    LIVE,
    REPORT_INTERVAL,
    STOPPED,
    RunnerStats,
    live_runners,
    report,
    runner_state,
)
from tests.test_metrics import TOKEN, samples

pytestmark = pytest.mark.django_db

SECOND = timedelta(seconds=1)


def runner_labels(settings) -> set[str]:
    settings.METRICS_TOKEN = TOKEN
    response = Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get("/metrics")
    assert response.status_code == 200
    return {dict(labels)["runner"] for _name, labels in samples(response.content.decode())
            if "runner" in dict(labels)}  # fmt: skip


def test_gone_means_about_three_missed_reports():
    assert 3 * REPORT_INTERVAL < GONE_AFTER.total_seconds() <= 4 * REPORT_INTERVAL


def test_a_runner_that_missed_its_reports_is_gone_from_health_and_metrics(admin_client, settings):
    now = timezone.now()
    report(RunnerStats(name="killed:1"), {}, now=now - GONE_AFTER - SECOND)
    report(RunnerStats(name="running:2"), {}, now=now - GONE_AFTER + 5 * SECOND)
    assert [r.name for r in live_runners(now)] == ["running:2"]
    runners = admin_client.get("/health/").json()["runners"]
    assert [r["name"] for r in runners] == ["running:2"]
    assert runner_labels(settings) == {"running:2"}


def test_a_clean_stop_is_stopped_at_once_and_the_admin_shows_each_state(admin_client):
    now = timezone.now()
    report(RunnerStats(name="killed:1"), {}, now=now - 5 * GONE_AFTER)
    report(RunnerStats(name="stopped:2"), {}, stopped=True, now=now)
    report(RunnerStats(name="running:3"), {}, now=now)
    states = {r.name: runner_state(r, now) for r in Runner.objects.all()}
    assert states == {"killed:1": GONE, "stopped:2": STOPPED, "running:3": LIVE}
    assert [r.name for r in live_runners(now)] == ["running:3"]
    page = admin_client.get(reverse("admin:connections_app_runner_changelist")).content.decode()
    assert "gone: last seen 1\xa0minute ago" in page  # 100 s: staff see that it died, and when
    assert ">stopped<" in page and ">live<" in page


def test_rows_not_seen_for_the_forget_age_are_deleted_by_the_next_report():
    now = timezone.now()
    report(RunnerStats(name="long gone:1"), {}, now=now - FORGET_AFTER - SECOND)
    report(RunnerStats(name="gone today:2"), {}, now=now - FORGET_AFTER + timedelta(minutes=1))
    report(RunnerStats(name="running:3"), {}, now=now)
    assert sorted(Runner.objects.values_list("name", flat=True)) == ["gone today:2", "running:3"]
