"""Push checks: pings over real HTTP (Django's test client), silence judged by the runner."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from connections_app import ping
from connections_app.connection_manager import ConnectionManager
from connections_app.models import DOWN, UP, CheckResult, HealthCheck, StateChange
from connections_app.monitor import Monitor, claim_due_checks
from connections_app.ping import RateLimiter
from connections_app.push import record_ping

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_limiter(monkeypatch):
    monkeypatch.setattr(ping, "limiter", RateLimiter(ping.PINGS_PER_SECOND))


@pytest.fixture
def job() -> HealthCheck:
    return HealthCheck.objects.create(name="backup", kind="push", target="nightly backup")


def url(check: HealthCheck, signal: str = "") -> str:
    return f"/ping/{check.push_token}" + (f"/{signal}" if signal else "")


def last(check: HealthCheck) -> CheckResult:
    return CheckResult.objects.filter(health_check=check).latest("checked_at")


def test_a_push_check_gets_an_unguessable_token_of_its_own(job):
    other = HealthCheck.objects.create(name="other", kind="push", target="x")
    assert len(job.push_token) == 32 and job.push_token != other.push_token
    assert HealthCheck.objects.create(name="web", target="http://127.0.0.1:1/").push_token is None


@pytest.mark.parametrize("method", ["get", "head", "post"])
def test_a_ping_is_a_success(client, job, method):
    response = getattr(client, method)(url(job))
    assert response.status_code == 200
    job.refresh_from_db()
    assert job.status == UP and job.last_ping_at is not None
    assert last(job).ok


def test_a_posted_body_is_stored_redacted_and_cut_at_10_kb(client, job):
    body = "done; password=hunter2 " + "x" * 20_000
    client.post(url(job), body, content_type="text/plain")
    stored = last(job).ping_body
    assert "hunter2" not in stored and "password=***" in stored
    assert len(stored) <= 10 * 1024


def test_fail_and_a_nonzero_exit_code_are_failures_and_down_at_once(client, job):
    client.get(url(job, "fail"))
    job.refresh_from_db()
    assert (job.status, job.last_error_category) == (DOWN, "reported")
    assert job.last_error_message == "the job reported a failure"
    client.get(url(job, "0"))
    job.refresh_from_db()
    assert job.status == UP
    client.post(url(job, "2"), "disk full", content_type="text/plain")
    job.refresh_from_db()
    assert (job.status, job.last_error_message) == (DOWN, "the job exited with 2")
    assert last(job).ping_body == "disk full"
    moves = StateChange.objects.filter(health_check=job).order_by("at")
    assert [(m.from_status, m.to_status) for m in moves] == [
        ("unknown", "down"),
        ("down", "up"),
        ("up", "down"),
    ]


def test_start_to_success_is_the_run_s_duration(job):
    began = timezone.now()
    assert record_ping(job, "start", b"", began) is None
    job.refresh_from_db()
    outcome = record_ping(job, "", b"", began + timedelta(seconds=42))
    assert outcome.result.latency_ms == 42_000
    job.refresh_from_db()
    assert (job.last_latency_ms, job.push_started_at) == (42_000, None)
    assert CheckResult.objects.filter(health_check=job).count() == 1  # start stores no result


def test_start_over_http_then_success(client, job):
    assert client.get(url(job, "start")).status_code == 200
    assert not CheckResult.objects.filter(health_check=job).exists()
    client.get(url(job))
    assert last(job).latency_ms >= 0


@pytest.mark.parametrize("signal", ["256", "-1", "bogus", "1.5"])
def test_an_unknown_signal_is_404(client, job, signal):
    assert client.get(url(job, signal)).status_code == 404
    assert not CheckResult.objects.filter(health_check=job).exists()


def test_a_wrong_token_is_404_and_costs_one_indexed_lookup(client, job, django_assert_num_queries):
    wrong = "A" * 32
    with django_assert_num_queries(1) as queries:
        assert client.get(f"/ping/{wrong}").status_code == 404
    assert "push_token" in queries.captured_queries[0]["sql"]
    with django_assert_num_queries(0):  # not even the shape of a token
        assert client.get("/ping/x").status_code == 404


def test_other_methods_are_refused(client, job):
    assert client.put(url(job)).status_code == 405


def test_pings_are_rate_limited_per_token(client, job, monkeypatch):
    monkeypatch.setattr(ping, "limiter", RateLimiter(2, clock=lambda: 1000.0))
    other = HealthCheck.objects.create(name="other", kind="push", target="x")
    codes = [client.get(url(job)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert client.get(url(other)).status_code == 200
    assert CheckResult.objects.filter(health_check=job).count() == 2


def test_the_limiter_starts_each_second_afresh_and_stays_bounded():
    now = [10.0]
    limiter = RateLimiter(1, max_keys=3, clock=lambda: now[0])
    assert [limiter.allow("a"), limiter.allow("a")] == [True, False]
    now[0] = 11.2
    assert limiter.allow("a")
    for key in "bcdefg":
        limiter.allow(key)
    assert len(limiter._counts) <= 3


@pytest.mark.django_db(transaction=True)
def test_silence_past_interval_and_grace_is_down_and_nothing_is_probed():
    check = HealthCheck.objects.create(
        name="cron", kind="push", target="cron on db1", interval=60, timeout=5, grace=30
    )
    now = timezone.now()
    HealthCheck.objects.filter(pk=check.pk).update(last_ping_at=now - timedelta(seconds=80))
    assert run_once(check) == ([], 0)  # 80 s of silence: within 60 + 30
    HealthCheck.objects.filter(pk=check.pk).update(last_ping_at=now - timedelta(seconds=100))
    stored, sockets = run_once(check)
    assert sockets == 0
    assert (stored[0].result.error_category, stored[0].status) == ("timeout", DOWN)
    # Counted when the runner looks, a moment after the 100 s set above.
    assert re.fullmatch(r"no ping for 10\d s", stored[0].result.error_message)


def run_once(check: HealthCheck) -> tuple[list, int]:
    check.refresh_from_db()

    async def run():
        async with ConnectionManager() as manager:
            stored = await Monitor(manager).run_once([check], asyncio.Event())
            return stored, manager.stats()["sockets_made"]

    return asyncio.run(run())


def test_the_runner_looks_at_a_push_check_when_its_silence_would_matter(job):
    HealthCheck.objects.exclude(pk=job.pk).delete()
    now = timezone.now()
    HealthCheck.objects.filter(pk=job.pk).update(last_ping_at=now, next_due_at=None)
    (claimed,) = claim_due_checks(now)
    assert claimed.next_due_at == now + timedelta(seconds=job.interval + job.grace)


def test_the_admin_page_shows_copy_ready_lines(admin_client, job, settings):
    page = admin_client.get(reverse("admin:connections_app_healthcheck_change", args=[job.pk]))
    text = page.content.decode()
    assert f"curl -fsS -m 10 --retry 3 -o /dev/null http://testserver/ping/{job.push_token}" in text
    assert "ExecStartPost=" in text and "task_success" in text
    settings.SITE_URL = "https://health.example.com"
    page = admin_client.get(reverse("admin:connections_app_healthcheck_change", args=[job.pk]))
    assert f"https://health.example.com/ping/{job.push_token}" in page.content.decode()
