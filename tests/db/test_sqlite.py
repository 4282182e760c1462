"""The retrying cursor against SQLite files locked by other processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest
from django.db import IntegrityError, OperationalError, ProgrammingError, connections

from connections_app.db import counters
from connections_app.db.exceptions import ConnectionRejected, RetriesExhausted
from connections_app.db.retrying_cursor import retrying_execute
from connections_app.db.transactions import retry_transaction
from connections_app.models import CheckResult, HealthCheck
from tests.db.conftest import REPO, SQLITE_ALIAS, TIMEOUT, delta, read_line, stop

checks = HealthCheck.objects.db_manager(SQLITE_ALIAS)
results = CheckResult.objects.db_manager(SQLITE_ALIAS)
NO_COUNTS = {"retries": 0, "reconnects": 0}


def new_check(name: str) -> HealthCheck:
    return checks.create(name=name, kind="tcp", target="127.0.0.1:9")


def test_the_connection_is_tuned_for_concurrent_writers(sqlite_alias):
    connection = sqlite_alias(busy_timeout=2.5)
    with connection.cursor() as cursor:
        pragmas = {
            name: cursor.execute(f"PRAGMA {name}").fetchone()[0]
            for name in ("journal_mode", "synchronous", "busy_timeout")
        }
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 2500}
    assert connection.transaction_mode == "IMMEDIATE"


@pytest.mark.parametrize("how", ["autocommit", "retry_transaction"])
def test_a_write_waits_for_a_lock_held_for_2_s_and_succeeds(sqlite_alias, hold_write_lock, how):
    # Each try waits 0.5 s in SQLite's busy handler; 6 tries and 3.75 s of waits outlast 2 s.
    connection = sqlite_alias(busy_timeout=0.5, retry_attempts=5, retry_base_delay=0.25)
    before = counters.counts(SQLITE_ALIAS)
    hold_write_lock(connection.settings_dict["NAME"], 2)
    if how == "autocommit":
        new_check("waited")
    else:
        retry_transaction(using=SQLITE_ALIAS)(new_check)("waited")
    assert list(checks.values_list("name", flat=True)) == ["waited"]
    assert delta(SQLITE_ALIAS, before)["retries"] >= 1


@pytest.mark.parametrize("how", ["autocommit", "retry_transaction"])
def test_a_lock_held_for_30_s_fails_clearly_after_the_policys_attempts(
    sqlite_alias, hold_write_lock, how, caplog
):
    connection = sqlite_alias(busy_timeout=0.2, retry_attempts=3, retry_base_delay=0.05)
    policy = connection.retry_policy
    before = counters.counts(SQLITE_ALIAS)
    hold_write_lock(connection.settings_dict["NAME"], 30)
    started = time.monotonic()
    with pytest.raises(RetriesExhausted, match="after 3 retries .*database is locked"):
        if how == "autocommit":
            new_check("never")
        else:
            retry_transaction(using=SQLITE_ALIAS)(new_check)("never")
    elapsed = time.monotonic() - started
    assert delta(SQLITE_ALIAS, before) == {"retries": policy.attempts, "reconnects": 0}
    # 4 tries of 0.2 s and 0.35 s of waits; the bound only says "not a hang".
    assert elapsed < 10
    # Three retries, one log line: the error handler counts the repeats.
    logged = [r.getMessage() for r in caplog.records if "db.retry" in r.getMessage()]
    assert len(logged) == 1 and "db_locked" in logged[0]


def test_eight_processes_writing_at_once_lose_no_row(sqlite_alias):
    workers, rows = 8, 40
    connection = sqlite_alias()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{connection.settings_dict['NAME']}",
        "DB_RETRY_BASE_DELAY": "0.05",
        "LOG_LEVEL": "WARNING",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.db.writer", str(n), str(rows)],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(workers)
    ]
    try:
        for proc in procs:
            read_line(proc, "ready")
        for proc in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        assert [proc.wait(TIMEOUT) for proc in procs] == [0] * workers
    finally:
        for proc in procs:
            stop(proc)
    assert checks.count() == workers
    assert results.count() == workers * rows
    assert checks.filter(next_due_at__isnull=True).count() == 0


def test_a_file_that_cannot_be_opened_fails_at_once(sqlite_alias, tmp_path):
    # A missing directory is not a lost connection: no wait will create it.
    connection = sqlite_alias(retry_base_delay=5)  # a retry would wait 5 s
    connection.close()
    connection.settings_dict["NAME"] = str(tmp_path / "missing-folder" / "db.sqlite3")
    before = counters.counts(SQLITE_ALIAS)
    started = time.monotonic()
    with pytest.raises(ConnectionRejected, match="unable to open database file"):
        checks.count()
    assert time.monotonic() - started < 5
    assert delta(SQLITE_ALIAS, before) == {"retries": 0, "reconnects": 0}


def test_a_file_that_is_not_a_database_fails_at_once(sqlite_alias, tmp_path):
    connection = sqlite_alias(retry_base_delay=5)  # a retry would wait 5 s
    connection.close()
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_bytes(b"not SQLite at all " * 512)
    connection.settings_dict["NAME"] = str(not_a_database)
    before = counters.counts(SQLITE_ALIAS)
    with pytest.raises(ConnectionRejected, match="not retried.*file is not a database"):
        checks.count()
    assert delta(SQLITE_ALIAS, before) == NO_COUNTS


@pytest.mark.parametrize(
    ("statement", "error"),
    [("SELEC 1", OperationalError), ("INSERT INTO nowhere VALUES (1)", OperationalError)],
    ids=["syntax", "no-table"],
)
def test_errors_that_are_not_locks_are_raised_after_one_attempt(sqlite_alias, statement, error):
    connection = sqlite_alias()
    executed = []

    def count(execute, sql, params, many, context):
        executed.append(sql)
        return execute(sql, params, many, context)

    before = counters.counts(SQLITE_ALIAS)
    with connection.execute_wrapper(count), pytest.raises(error):
        with connection.cursor() as cursor:
            cursor.execute(statement)
    assert executed == [statement]
    assert delta(SQLITE_ALIAS, before) == NO_COUNTS


def test_an_integrity_error_is_not_retried(sqlite_alias):
    sqlite_alias()
    check = new_check("once")
    at = datetime(2024, 1, 1, tzinfo=UTC)
    results.create(health_check=check, checked_at=at, ok=True)
    before = counters.counts(SQLITE_ALIAS)
    with pytest.raises(IntegrityError):
        results.create(health_check=check, checked_at=at, ok=False)

    @retry_transaction(using=SQLITE_ALIAS)
    def not_a_database_failure() -> None:
        raise ProgrammingError("not a database failure")

    with pytest.raises(ProgrammingError):
        not_a_database_failure()
    assert delta(SQLITE_ALIAS, before) == NO_COUNTS


def test_every_thread_gets_the_retrying_cursor_once(sqlite_alias):
    connection = sqlite_alias()
    seen = []

    def in_a_thread() -> None:
        other = connections[SQLITE_ALIAS]
        try:
            seen.append((other is connection, other.execute_wrappers.count(retrying_execute)))
        finally:
            other.close()

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(TIMEOUT)
    assert seen == [(False, 1)]
    assert connection.execute_wrappers.count(retrying_execute) == 1


@pytest.mark.django_db(transaction=True)
def test_the_bare_decorator_uses_the_default_database():
    @retry_transaction
    def create() -> int:
        return HealthCheck.objects.create(name="default", kind="tcp", target="127.0.0.1:9").pk

    assert HealthCheck.objects.get(pk=create()).name == "default"
