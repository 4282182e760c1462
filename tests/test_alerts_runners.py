"""Alerts across crashes and runners: ``manage.py runchecks`` child processes (each with its
sender process), a file or a private PostgreSQL database, real loopback receivers that count
deliveries by Idempotency-Key.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.alerting import children
from tests.conftest import REPO, manage, start_manage, wait_until
from tests.http_targets import HttpTarget

#: Short enough for a test, in the order settings check them: a send, then the lease beyond it.
FAST = {
    "ALERT_SEND_TIMEOUT": "5",
    "ALERT_LEASE_SECONDS": "6",
    "ALERT_RETRY_BASE_DELAY": "0.5",
    "ALERT_RETRY_MAX_DELAY": "1",
    "FLAP_CHANGES": "1000",
    "LOG_LEVEL": "WARNING",
}


def import_checks(env: dict, checks: list[dict]) -> None:
    run = manage(env, "importchecks", "-", stdin=json.dumps(checks))
    assert run.returncode == 0, run.stderr


def add_channel(env: dict, url: str) -> None:
    code = (
        "from connections_app.alerts.models import NotificationChannel\n"
        f"NotificationChannel.objects.create(name='ops', target={url!r}, all_checks=True)\n"
    )
    run = manage(env, "shell", "-c", code)
    assert run.returncode == 0, run.stderr


def stop(child: subprocess.Popen) -> str:
    """SIGTERM, bounded wait; the child's stderr."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
    try:
        _out, err = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        _out, err = child.communicate()
    return err


def sqlite_rows(env: dict, query: str) -> list[tuple]:
    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")) as db:
        return db.execute(query).fetchall()


@pytest.mark.slow
def test_a_runner_killed_mid_send_loses_no_alert_and_the_next_sends_it_once(
    sqlite_file_env, http_target: HttpTarget
):
    env = sqlite_file_env | FAST
    api = {"name": "api", "target": http_target.url("/switch/api"), "interval": 1,
           "timeout": 0.5, "failures_before_down": 1}  # fmt: skip
    import_checks(env, [api])
    add_channel(env, http_target.url("/hook/ops"))
    http_target.switch("api", 503)
    http_target.hook("ops", "stall")  # the first try never gets an answer
    first = start_manage(env, "runchecks")
    try:
        wait_until(lambda: http_target.received("ops"), first, timeout=30)
        # The change is committed, its alert with it, claimed and mid-send: now the runner
        # and its sender process die together, as in a machine's crash (a sender left alone
        # would finish its send and record it: tests/test_alerts_process.py).
        alerts = "select kind, status, attempts from connections_app_alert"
        assert sqlite_rows(env, alerts) == [("down", "sending", 1)]
        (sender,) = children(first.pid)
        first.send_signal(signal.SIGKILL)
        os.kill(sender, signal.SIGKILL)
        first.communicate(timeout=30)
    finally:
        stop(first)
    second = start_manage(env, "runchecks")
    try:
        wait_until(lambda: http_target.delivered("ops"), second, timeout=30)
    finally:
        err = stop(second)
    assert "Traceback" not in err
    (key,) = http_target.delivered("ops")
    assert [r["key"] for r in http_target.received("ops")] == [key, key]
    assert sqlite_rows(env, alerts) == [("down", "sent", 2)]


@pytest.fixture
def postgres_env(postgres_url, sqlite_file_env) -> Iterator[dict[str, str]]:
    """Environment for child processes on a private, migrated PostgreSQL database."""
    import psycopg
    from psycopg import sql

    database = f"ch_alerts_{uuid.uuid4().hex[:8]}"
    name = sql.Identifier(database)

    def admin(statement: sql.Composed) -> None:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(statement)

    admin(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        url = urlsplit(postgres_url)._replace(path=f"/{database}").geturl()
        env = sqlite_file_env | FAST | {"DATABASE_URL": url}
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
        subprocess.run(migrate, cwd=REPO, env=env, check=True, timeout=120)
        yield env
    finally:
        admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def pg_rows(env: dict, query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(env["DATABASE_URL"], autocommit=True) as connection:
        return connection.execute(query).fetchall()


#: The changes that must alert a channel that wants DOWN and recovered (the defaults).
ALERTING = (
    "select c.id from connections_app_statechange c "
    "join connections_app_healthcheck h on h.id = c.health_check_id "
    "where h.name like 'flip %' and not c.during_maintenance and (c.to_status = 'down' "
    "or (c.to_status = 'up' and c.from_status in ('down', 'degraded')))"
)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_runners_deliver_every_alert_exactly_once(postgres_env, http_target: HttpTarget):
    env, count = postgres_env, 50
    import_checks(env, [
        {"name": f"flip {n}", "target": http_target.url(f"/switch/{n}"), "interval": 1,
         "timeout": 0.5, "failures_before_down": 1}
        for n in range(count)
    ])  # fmt: skip
    add_channel(env, http_target.url("/hook/ops"))
    runners = [start_manage(env, "runchecks") for _ in range(2)]
    try:
        for status, word in ((200, "up"), (503, "down"), (200, "up"), (503, "down")):
            for n in range(count):
                http_target.switch(str(n), status)
            in_state = "select count(*) from connections_app_healthcheck where name like "
            in_state += f"'flip %' and status = '{word}'"
            wait_until(lambda q=in_state: pg_rows(env, q)[0][0] == count, runners[0], timeout=20)
        expected = {row[0] for row in pg_rows(env, ALERTING)}
        assert len(expected) == 3 * count  # down, recovered, down
        wait_until(lambda: len(http_target.delivered("ops")) >= len(expected), timeout=20)
    finally:
        errors = [stop(runner) for runner in runners]
    assert not [e for e in errors if "Traceback" in e], errors
    keys = Counter(http_target.delivered("ops"))
    assert set(keys.values()) == {1}, [k for k, n in keys.items() if n > 1]  # never twice
    alerts = pg_rows(env, "select id, state_change_id, status from connections_app_alert")
    assert {str(pk) for pk, _, _ in alerts} == set(keys)  # none missing
    assert {change for _, change, _ in alerts} == expected  # one per alerting change
    assert {status for _, _, status in alerts} == {"sent"}
