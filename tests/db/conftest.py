"""Fixtures for the database layer: private databases on our backends, helper processes.

No test here runs inside an atomic block (no pytest-django ``TestCase``: there every statement
is in a transaction and the retry path never runs); they unblock the database and use their
own aliases. Each database is private, so engineers running the suite at once do not collide:
a SQLite file in ``tmp_path``, or the PostgreSQL database ``ch_dbtest_<pid>``, dropped at the end.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from django.db import DEFAULT_DB_ALIAS, connections
from psycopg import sql

from connections_app.db import counters
from connections_app.models import CheckResult, ErrorStat, HealthCheck
from project.config import database_config
from tests.conftest import TEST_DATABASE_URL, require_server

PG_ALIAS = "dbtest_pg"
SQLITE_ALIAS = "dbtest_sqlite"
REPO = Path(__file__).resolve().parents[2]
#: Every wait in these tests is bounded by this many seconds.
TIMEOUT = 30
#: Short waits so that retries cost milliseconds in tests: 0.05 s, 0.1 s, 0.2 s.
FAST_RETRY = {"retry_attempts": 3, "retry_base_delay": 0.05}
TABLES = (HealthCheck, CheckResult, ErrorStat)


@contextmanager
def temporary_alias(alias: str, config: dict) -> Iterator:
    """``alias`` in ``django.db.connections`` for the duration; its connection closed after."""
    configured = connections.configure_settings({DEFAULT_DB_ALIAS: {}, alias: dict(config)})
    connections.settings[alias] = configured[alias]
    try:
        yield connections[alias]
    finally:
        connection = connections[alias]
        connection.close()
        if getattr(connection, "pool", None):
            connection.close_pool()
        del connections[alias]
        del connections.settings[alias]


def create_tables(alias: str) -> None:
    with connections[alias].schema_editor() as editor:
        for model in TABLES:
            editor.create_model(model)


def delta(alias: str, before: dict[str, int]) -> dict[str, int]:
    """Retries and reconnects of ``alias`` since ``before`` (``counters.counts(alias)``)."""
    now = counters.counts(alias)
    return {kind: now[kind] - before[kind] for kind in now}


def backend_pid(connection) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


def terminate(admin: psycopg.Connection, pid: int) -> None:
    """End the test's own session ``pid`` from another connection, and wait until it is gone."""
    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    wait_until(
        lambda: (
            admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone() is None
        ),
        f"backend {pid} has exited",
    )


def read_line(proc: subprocess.Popen, expected: str) -> None:
    """Wait (bounded) for ``proc`` to print ``expected``."""
    ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
    line = proc.stdout.readline().strip() if ready else "(nothing)"
    assert line == expected, f"helper process said {line!r}, expected {expected!r}"


def stop(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(TIMEOUT)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_database_url(django_db_blocker) -> Iterator[str]:
    """A private database with our tables, for this test process; dropped at the end."""
    require_server(TEST_DATABASE_URL, "PostgreSQL (TEST_DATABASE_URL)")
    name = f"ch_dbtest_{os.getpid()}"
    _admin_sql(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    _admin_sql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = urlsplit(TEST_DATABASE_URL)._replace(path=f"/{name}").geturl()
    with django_db_blocker.unblock(), temporary_alias(PG_ALIAS, pg_config(url)):
        create_tables(PG_ALIAS)
    yield url
    _admin_sql(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _admin_sql(statement: sql.Composed) -> None:
    with psycopg.connect(TEST_DATABASE_URL, autocommit=True) as admin:
        admin.execute(statement)


def pg_config(url: str, **options) -> dict:
    return database_config(url, REPO, **(FAST_RETRY | options))


@pytest.fixture
def pg_alias(pg_database_url, django_db_blocker) -> Iterator[Callable]:
    """Register ``PG_ALIAS`` on the private database with ``database_config`` options."""
    with ExitStack() as stack:

        def register(**options):
            stack.enter_context(django_db_blocker.unblock())
            connection = stack.enter_context(
                temporary_alias(PG_ALIAS, pg_config(pg_database_url, **options))
            )
            names = ", ".join(m._meta.db_table for m in TABLES)
            with connection.cursor() as cursor:
                cursor.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
            return connection

        yield register


@pytest.fixture
def pg(pg_alias):
    """This thread's connection of ``PG_ALIAS``, with the fast retry policy."""
    return pg_alias()


@pytest.fixture
def pg_admin(pg_database_url) -> Iterator[psycopg.Connection]:
    """Another session on the private database: it terminates the test's own session."""
    with psycopg.connect(pg_database_url, autocommit=True) as admin:
        yield admin


# --- SQLite ----------------------------------------------------------------------------------


@pytest.fixture
def sqlite_alias(tmp_path, django_db_blocker) -> Iterator[Callable]:
    """Register ``SQLITE_ALIAS`` on a private file with ``database_config`` options."""
    path = tmp_path / "db.sqlite3"
    with ExitStack() as stack:

        def register(**options):
            stack.enter_context(django_db_blocker.unblock())
            config = database_config(f"sqlite:///{path}", tmp_path, **(FAST_RETRY | options))
            connection = stack.enter_context(temporary_alias(SQLITE_ALIAS, config))
            create_tables(SQLITE_ALIAS)
            return connection

        yield register


@pytest.fixture
def hold_write_lock() -> Iterator[Callable]:
    """Start a process that holds SQLite's write lock on a file for some seconds."""
    procs: list[subprocess.Popen] = []

    def hold(path: str, seconds: float) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("lock_holder.py")), path, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        read_line(proc, "locked")
        return proc

    yield hold
    for proc in procs:
        stop(proc)
