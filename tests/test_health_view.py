import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from connections_app.models import HealthCheck
from tests.conftest import REPO, free_port, refusing_port, wait_until
from tests.test_models import add_results


@pytest.fixture
def client(admin_client):
    """Staff, who get every check's detail; anyone else gets counts (``anyone``)."""
    return admin_client


@pytest.fixture
def anyone() -> Client:
    return Client()


@pytest.fixture
def only_our_checks(db):
    HealthCheck.objects.all().delete()


def make(name, results, critical=True, target="redis://:hunter2@127.0.0.1:6379/0"):
    check = HealthCheck.objects.create(
        name=name, kind="redis", target=target, critical=critical, failures_before_down=1
    )
    add_results(check, results)
    return check


def test_it_answers_200_when_everything_is_up(client, only_our_checks):
    make("cache", [True])
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "up"
    assert body["checks"][0]["name"] == "cache"
    assert body["checks"][0]["status"] == "up"


def test_it_answers_503_when_a_critical_check_is_down(client, only_our_checks):
    make("cache", [True])
    make("db", [False])
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["status"] == "down"


def test_a_non_critical_check_down_keeps_200(client, only_our_checks):
    make("cache", [True])
    make("reports", [False], critical=False)
    response = client.get("/health/")
    assert response.status_code == 200
    assert response.json()["status"] == "down"


def test_results_older_than_three_runs_are_marked_stale(client, only_our_checks):
    # The runner stopped: the last results say UP, but they are history, and /health/ says so.
    make("cache", [True])
    old = make("db", [True])
    # 3 intervals + the timeout + 10 s: 3 * 30 + 5 + 10 = 105 s for the defaults.
    assert (old.interval, old.timeout) == (30, 5)
    HealthCheck.objects.filter(pk=old.pk).update(
        last_checked_at=timezone.now() - timedelta(seconds=200)
    )
    summary = client.get("/health/").json()
    stale = {c["name"]: (c["stale"], c["stale_after_s"]) for c in summary["checks"]}
    assert stale == {"cache": (False, 105), "db": (True, 105)}
    assert summary["stale"] is True
    HealthCheck.objects.filter(pk=old.pk).update(enabled=False)  # paused: never stale
    assert client.get("/health/").json()["stale"] is False


def test_anyone_learns_of_one_stale_check_among_fresh_ones_alike(anyone, only_our_checks):
    # The counts come from one grouped query; one old result in a group of fresh checks with
    # the same interval and timeout must still make the answer stale, and a paused check never.
    for name in ("a", "b", "c"):
        make(name, [True])
    HealthCheck.objects.filter(name="b").update(
        last_checked_at=timezone.now() - timedelta(seconds=106)
    )
    body = anyone.get("/health/").json()
    assert (body["stale"], body["counts"]) == (True, {"up": 3})
    HealthCheck.objects.filter(name="b").update(interval=60)  # 3 * 60 + 5 + 10 = 195 s
    assert anyone.get("/health/").json()["stale"] is False
    HealthCheck.objects.filter(name="b").update(interval=30, enabled=False)
    assert anyone.get("/health/").json()["stale"] is False


def test_it_gives_each_checks_uptime_over_24_hours_in_a_fixed_number_of_queries(
    client, only_our_checks, django_assert_num_queries
):
    make("cache", [True, True, True, False])
    make("db", [False], critical=False)
    HealthCheck.objects.create(name="fresh", kind="tcp", target="127.0.0.1:1")
    # The session and its user, the checks, their figures (the totals of ended periods with
    # this hour's and today's rollups, the ids of every check, the sums of those without
    # totals), the runners.
    with django_assert_num_queries(7):
        summary = client.get("/health/").json()
    uptime = {c["name"]: c["uptime_24h"] for c in summary["checks"]}
    assert uptime == {"cache": 0.75, "db": 0.0, "fresh": None}
    cache, fresh = summary["checks"][0], summary["checks"][2]
    assert set(cache["uptime"]) == {"24h", "7d", "30d", "90d"} and cache["uptime"]["30d"] == 75.0
    assert cache["latency_24h"] == {"p50": 5.0, "p95": 5.0, "p99": 5.0}
    assert fresh["uptime"]["90d"] is None and fresh["latency_24h"]["p95"] is None


def test_it_never_shows_targets_or_their_secrets(client, only_our_checks):
    make("cache", [True])
    text = client.get("/health/").content.decode()
    assert "hunter2" not in text
    assert "6379" not in text


def test_anyone_gets_the_status_and_counts_and_no_name(anyone, only_our_checks):
    make("cache", [True])
    make("db", [False])
    make("reports", [False], critical=False)
    response = anyone.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert (body["status"], body["critical_down"], body["stale"]) == ("down", True, False)
    assert body["counts"] == {"up": 1, "down": 2}
    assert "checks" not in body
    for secret in ("cache", "redis", "hunter2"):
        assert secret not in response.content.decode()


def test_a_tag_narrows_the_answer_to_one_service(anyone, client, only_our_checks):
    make("cache", [True])
    HealthCheck.objects.filter(name="cache").update(tags="web")
    make("db", [False])
    response = anyone.get("/health/?tag=web")
    assert response.status_code == 200
    assert response.json()["counts"] == {"up": 1}
    names = [c["name"] for c in client.get("/health/?tag=WEB").json()["checks"]]
    assert names == ["cache"]


def test_the_detail_needs_staff_or_the_health_token(anyone, only_our_checks, settings):
    make("cache", [True])
    settings.HEALTH_TOKEN = "a-token-of-sixteen-chars"
    ask = lambda **headers: anyone.get("/health/", headers=headers).json()  # noqa: E731
    assert "checks" in ask(authorization="Bearer a-token-of-sixteen-chars")
    assert "checks" not in ask(authorization="Bearer a-token-of-sixteen-charX")
    assert "checks" not in ask(authorization="Basic a-token-of-sixteen-chars")
    assert "checks" not in ask()
    assert "checks" not in ask(authorization="Bearer tökén-of-sixteen-chars")  # no 500
    settings.HEALTH_TOKEN = ""
    assert "checks" not in ask(authorization="Bearer ")


def test_it_answers_get_and_head_only(client, only_our_checks):
    make("db", [False])
    assert client.head("/health/").status_code == 503  # no body: tests/test_serve.py
    assert client.post("/health/").status_code == 405


def test_with_the_database_down_it_answers_503_within_one_connect_timeout():
    nobody_listens = refusing_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "DATABASE_URL": f"postgres://app:hunter2@127.0.0.1:{nobody_listens}/health",
        "DB_CONNECT_TIMEOUT": "2",
        # Waits of 5, 10 and 20 s: backing off, it would answer after 35 s, not fail the bound.
        "DB_RETRY_BASE_DELAY": "5",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    child = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-checks", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: _get(f"{base}/static/dashboard.js") is not None, child, timeout=30)
        started = time.monotonic()
        status, body = _get(f"{base}/health/", timeout=60)
        elapsed = time.monotonic() - started
    finally:
        child.kill()
        _, stderr = child.communicate(timeout=10)
    assert status == 503
    assert json.loads(body) == {
        "status": "unknown",
        "critical_down": True,
        "stale": True,
        "error": "database unavailable",
        "counts": {},  # the shape anyone gets; a session cannot be read either
    }
    assert elapsed < 10  # about hanging, not speed: one refused connect, no backoff
    assert "Traceback" not in stderr
    assert "hunter2" not in stderr


def _get(url: str, timeout: float = 2) -> tuple[int, bytes] | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()
    except OSError:
        return None


def test_a_database_never_migrated_is_named_in_the_answer_and_one_log_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"DATABASE_URL": f"sqlite:///{tmp_path}/empty.sqlite3"}
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "manage.py", "serve", "--no-checks", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/health/"
        wait_until(lambda: _get(url) is not None, child, timeout=30)
        status, body = _get(url)
    finally:
        child.terminate()
        _, stderr = child.communicate(timeout=20)
    assert status == 503
    missing = "the database has no table connections_app_healthcheck: run `manage.py migrate`"
    assert json.loads(body)["error"] == missing
    assert "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if "health" in line and missing in line]
