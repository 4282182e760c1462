"""The monitor API against a real loopback HTTP target: the documented lines as written, in a
coroutine; checks created, updated and removed by name; bad values named; a clean stop."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.utils import timezone

from connections_app.connection_monitor import (
    HealthCheckConfig,
    InvalidHealthCheckConfig,
    get_global_monitor,
    reset_global_monitor,
    start_connection_monitoring,
    stop_connection_monitoring,
)
from connections_app.events import checks_changed
from connections_app.models import DOWN, PAUSED, UP, CheckResult, HealthCheck
from connections_app.monitor import Monitor
from connections_app.state import switch

# The runner looks for new checks every second (monitor.MAX_IDLE): 10 s is a generous bound.
WAIT = 10.0
live = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def monitoring():
    """No check but the test's; the global monitor stopped and forgotten after the test."""
    await HealthCheck.objects.all().adelete()  # the migration's self-checks would run too
    yield
    await stop_connection_monitoring()
    reset_global_monitor()


async def wait_for(condition, what: str) -> None:
    """Poll the async ``condition`` until it is true; fail after ``WAIT`` seconds."""
    try:
        async with asyncio.timeout(WAIT):
            # Polling: the state is in the database, written by the runner; no event to await.
            while not await condition():  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"{what}: not within {WAIT} s") from None


def status_is(name: str, status: str):
    async def condition():
        return await HealthCheck.objects.filter(name=name, status=status).aexists()

    return condition


@live
async def test_the_documented_lines_run_as_written(monitoring, http_target):
    endpoint = http_target.url("/ok")
    # The documented lines, as written (only the endpoint is ours).
    await start_connection_monitoring()
    monitor = get_global_monitor()
    monitor.add_health_check("api", HealthCheckConfig(endpoint=endpoint, check_interval=30.0))
    await wait_for(status_is("api", UP), "api UP")
    health_summary = monitor.get_health_summary()

    document = json.loads(json.dumps(health_summary))  # JSON-serialisable, as it is
    assert document["status"] == UP and document["critical_down"] is False
    (api,) = document["checks"]
    assert api["name"] == "api" and api["kind"] == "http" and api["status"] == UP
    assert api["since"] is not None and api["flapping"] is False and api["stale"] is False
    assert api["latency_ms"] >= 0 and api["uptime_24h"] == 1.0 and api["error_category"] == ""
    # The document staff get from /health/ (its time aside: it is made when asked).
    staff = await User.objects.acreate(username="staff", is_staff=True, is_superuser=True)
    web = AsyncClient()
    await web.aforce_login(staff)
    served = (await web.get("/health/")).json()
    assert {**served, "generated_at": None} == {**document, "generated_at": None}
    assert http_target.hits["/ok"] == 1  # the interval is 30 s: one run so far
    await stop_connection_monitoring()


@live
async def test_the_summary_follows_a_check_that_goes_down(monitoring, http_target):
    monitor = await start_connection_monitoring()
    config = HealthCheckConfig(
        endpoint=http_target.url("/switch/api"),
        check_interval=1,
        timeout=0.5,
        failures_before_down=1,
        tags=["public", "API"],
    )
    monitor.add_health_check("api", config)
    await wait_for(status_is("api", UP), "api UP")
    http_target.switch("api", 500)
    await wait_for(status_is("api", DOWN), "api DOWN")
    (api,) = monitor.get_health_summary()["checks"]
    assert (
        api["status"] == DOWN and api["error_category"] != "" and api["tags"] == ["api", "public"]
    )
    assert 0 < api["uptime_24h"] < 1


@live
async def test_stop_lets_the_running_checks_finish_and_stores_their_results(
    monitoring, http_target
):
    slow = "/slow/2"  # seconds of margin either side on a busy machine
    monitor = await start_connection_monitoring()
    monitor.add_health_check(
        "slow", HealthCheckConfig(endpoint=http_target.url(slow), check_interval=10, timeout=5)
    )

    async def started():
        return http_target.hits[slow] >= 1

    await wait_for(started, "the first request")
    assert not await CheckResult.objects.aexists()  # in flight: answered in 2 s
    await stop_connection_monitoring()

    assert not monitor.running
    stored = [r async for r in CheckResult.objects.all()]
    assert len(stored) == http_target.hits[slow] and all(r.ok for r in stored)
    assert (await HealthCheck.objects.aget(name="slow")).status == UP
    http_target.wait_idle()  # and the manager's sockets are closed


@live
async def test_starting_twice_runs_one_runner_and_stopping_twice_is_harmless(monitoring):
    monitor = await start_connection_monitoring()
    task = monitor._task
    assert monitor.running and await start_connection_monitoring() is monitor
    assert monitor._task is task
    with pytest.raises(RuntimeError, match="stop the connection monitor"):
        reset_global_monitor()
    await stop_connection_monitoring()
    assert not monitor.running and task.done() and not task.cancelled()
    await stop_connection_monitoring()
    await start_connection_monitoring()  # and it starts again
    assert monitor.running and monitor._task is not task


@live
async def test_from_a_coroutine_bad_values_and_removal_work_too(monitoring):
    monitor = get_global_monitor()
    with pytest.raises(ValueError, match=r"^name: "):
        monitor.add_health_check("", HealthCheckConfig(endpoint="127.0.0.1:5432"))
    monitor.add_health_check("db port", HealthCheckConfig(endpoint="127.0.0.1:5432"))
    assert monitor.remove_health_check("db port") is True
    assert monitor.remove_health_check("db port") is False
    assert not await HealthCheck.objects.aexists()


@live
async def test_from_a_coroutine_add_returns_before_announcing_on_the_callers_loop(monitoring):
    # With the in-memory channel layer, the announcement of a changed check is handed to the
    # server's loop: when that is the caller's loop, blocked in add_health_check, it must not
    # be waited for.
    loop = asyncio.get_running_loop()
    heard = asyncio.Event()

    async def on_the_loop() -> None:
        heard.set()

    def announce_on_the_loop(sender, **kwargs) -> None:
        asyncio.run_coroutine_threadsafe(on_the_loop(), loop).result(timeout=2)

    checks_changed.connect(announce_on_the_loop, dispatch_uid="test-announce-on-the-loop")
    try:
        monitor = get_global_monitor()
        monitor.add_health_check("db port", HealthCheckConfig(endpoint="127.0.0.1:5432"))
        await asyncio.wait_for(heard.wait(), timeout=WAIT)
        heard.clear()
        assert monitor.remove_health_check("db port") is True
        await asyncio.wait_for(heard.wait(), timeout=WAIT)
    finally:
        checks_changed.disconnect(dispatch_uid="test-announce-on-the-loop")


@live
async def test_a_runner_that_crashes_is_logged_and_can_be_started_again(
    monitoring, monkeypatch, caplog
):
    async def crash(self, stop):
        raise RuntimeError("boom")

    monkeypatch.setattr(Monitor, "run_forever", crash)
    monitor = await start_connection_monitoring()
    await wait_for(lambda: _async(not monitor.running), "the crash")
    assert "the connection monitor stopped" in caplog.text and "boom" in caplog.text
    await stop_connection_monitoring()  # ended already: nothing to do, nothing raised
    monkeypatch.undo()
    await start_connection_monitoring()
    assert monitor.running


async def _async(value):
    return value


# Sync callers (a view, a shell, a management command): the same methods, no loop.


@pytest.mark.django_db
def test_add_creates_the_check_with_the_configs_fields():
    check = get_global_monitor().add_health_check(
        "api",
        HealthCheckConfig(
            endpoint="https://api.example.com/health",
            check_interval=60,
            timeout=2.5,
            failures_before_down=2,
            successes_before_up=3,
            tags="Prod, api",
            critical=False,
        ),
    )
    stored = HealthCheck.objects.get(name="api")
    assert stored.pk == check.pk
    assert (stored.kind, stored.target, stored.interval, stored.timeout) == (
        "http",
        "https://api.example.com/health",
        60,
        2.5,
    )
    assert (stored.failures_before_down, stored.successes_before_up) == (2, 3)
    assert (stored.tags, stored.critical, stored.enabled) == ("api,prod", False, True)


@pytest.mark.django_db
def test_adding_a_name_again_updates_that_check_and_keeps_what_staff_set():
    monitor = get_global_monitor()
    first = monitor.add_health_check("api", HealthCheckConfig(endpoint="https://a.example/h"))
    switch([first.pk], enabled=False)  # paused in the admin
    HealthCheck.objects.filter(pk=first.pk).update(
        expected_body="ok", next_due_at=timezone.now() + timedelta(days=1)
    )
    second = monitor.add_health_check(
        "api", HealthCheckConfig(endpoint="https://b.example/h", check_interval=10, timeout=1)
    )
    (stored,) = HealthCheck.objects.filter(target__endswith=".example/h")
    assert stored.name == "api" and stored.pk == first.pk == second.pk
    assert (stored.target, stored.interval, stored.timeout) == ("https://b.example/h", 10, 1)
    assert (stored.enabled, stored.status, stored.expected_body) == (False, PAUSED, "ok")
    assert stored.next_due_at is None  # a new endpoint is due at once


@pytest.mark.django_db
def test_adding_the_same_config_again_writes_nothing():
    # Every start of an application adds its checks again: no write, no dashboard rebuild.
    monitor = get_global_monitor()
    config = HealthCheckConfig(endpoint="redis://127.0.0.1:6379/0", tags=["b", "a"])
    monitor.add_health_check("cache", config)
    before = HealthCheck.objects.get(name="cache").updated_at
    monitor.add_health_check("cache", config)
    assert HealthCheck.objects.get(name="cache").updated_at == before


@pytest.mark.django_db
def test_remove_deletes_the_check_and_its_results():
    monitor = get_global_monitor()
    check = monitor.add_health_check("api", HealthCheckConfig(endpoint="https://a.example/h"))
    CheckResult.objects.create(health_check=check, ok=True)
    assert monitor.remove_health_check("api") is True
    assert not HealthCheck.objects.filter(name="api").exists()
    assert not CheckResult.objects.exists()
    assert monitor.remove_health_check("api") is False


@pytest.mark.django_db
def test_the_summary_is_the_health_document_without_a_loop():
    monitor = get_global_monitor()
    HealthCheck.objects.all().delete()
    monitor.add_health_check("api", HealthCheckConfig(endpoint="https://a.example/h"))
    summary = monitor.get_health_summary()
    json.dumps(summary)
    assert [(c["name"], c["status"], c["uptime_24h"]) for c in summary["checks"]] == [
        ("api", "unknown", None)
    ]


@pytest.mark.parametrize(
    ("endpoint", "kind"),
    [
        ("https://api.example.com/health", "http"),
        ("HTTP://api.example.com/", "http"),
        ("redis://127.0.0.1:6379/0", "redis"),
        ("rediss://:secret@cache.internal:6380/1", "redis"),
        ("db.internal:5432", "tcp"),
        ("[::1]:6379", "tcp"),
    ],
)
def test_the_kind_is_inferred_from_the_endpoint(endpoint, kind):
    assert HealthCheckConfig(endpoint=endpoint).kind == kind


def test_a_given_kind_is_kept():
    assert HealthCheckConfig(endpoint="default", kind="database").kind == "database"


BAD_VALUES = [
    ({"endpoint": "postgres://app:pw@db/app"}, "endpoint", "not supported yet"),
    ({"endpoint": "ftp://files.example"}, "endpoint", "'ftp'"),
    ({"endpoint": "default"}, "endpoint", "give kind"),
    ({"endpoint": "db.internal:99999"}, "endpoint", "1 to 65535"),
    ({"endpoint": "https://bad host/"}, "endpoint", "contains a space"),
    ({"endpoint": None}, "endpoint", "Expected a string"),
    ({"check_interval": 0.5}, "check_interval", "at least 1 second"),
    ({"check_interval": 10**6}, "check_interval", "at most 604800"),
    ({"check_interval": float("inf")}, "check_interval", "finite"),
    ({"check_interval": "30"}, "check_interval", "Expected a number"),
    ({"timeout": 0}, "timeout", "above 0"),
    ({"timeout": 30.0}, "timeout", "shorter than the interval"),
    ({"kind": "ping"}, "kind", "the kinds are http, tcp"),
    ({"endpoint": "127.0.0.1:80", "kind": "http"}, "endpoint", "URL has no scheme"),
    ({"failures_before_down": 0}, "failures_before_down", "At least 1"),
    ({"failures_before_down": 101}, "failures_before_down", "At most 100"),
    ({"failures_before_down": 2.5}, "failures_before_down", "whole number"),
    ({"successes_before_up": True}, "successes_before_up", "whole number"),
    ({"tags": ["a,b"]}, "tags", "not one tag"),
    ({"tags": 5}, "tags", "Expected a string or strings"),
    ({"critical": "yes"}, "critical", "True or False"),
]


@pytest.mark.parametrize(("values", "field", "message"), BAD_VALUES)
def test_a_bad_value_raises_value_error_naming_its_field(values, field, message):
    values = {"endpoint": "https://api.example.com/health", **values}
    with pytest.raises(ValueError, match=rf"^{field}: ") as raised:
        HealthCheckConfig(**values)
    assert message in str(raised.value)
    assert list(raised.value.errors) == [field]  # one message, for that field only


def test_every_bad_field_is_named_and_no_secret_is_shown():
    with pytest.raises(InvalidHealthCheckConfig) as raised:
        HealthCheckConfig(endpoint="https://u:hunter2@bad host/", timeout=-1, tags=5)
    assert list(raised.value.errors) == ["endpoint", "timeout", "tags"]
    config = HealthCheckConfig(endpoint="redis://:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in str(raised.value) + repr(config)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "message"), [("", "cannot be blank"), ("x" * 101, "at most 100"), (7, "a string")]
)
def test_a_bad_name_raises_value_error_naming_it(name, message):
    with pytest.raises(ValueError, match=rf"^name: .*{message}"):
        get_global_monitor().add_health_check(name, HealthCheckConfig(endpoint="127.0.0.1:80"))
    assert not HealthCheck.objects.filter(target="127.0.0.1:80").exists()
