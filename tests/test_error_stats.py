"""flush_error_stats: one upsert per fingerprint, counts added, nothing lost when the DB fails.

The failure paths are real: the ErrorStat table renamed away, and the table locked by a second
connection (SQLite shared cache / PostgreSQL ``LOCK TABLE`` with a short ``lock_timeout``).
They run on whichever database the test settings use (SQLite by default, PostgreSQL with
DATABASE_URL), in transaction=True tests because a failed statement ends a transaction.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from connections_app.error_handler import ErrorContext, ErrorHandler
from connections_app.error_stats import flush_error_stats
from connections_app.models import ErrorStat
from tests.conftest import FakeClock

TABLE = ErrorStat._meta.db_table


@pytest.fixture
def wall() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def handler(wall) -> ErrorHandler:
    return ErrorHandler(wall_clock=wall, logger=logging.getLogger("test.error_stats"))


def fail(handler: ErrorHandler, exc: BaseException, operation: str, times: int) -> None:
    for _ in range(times):
        handler.handle_error(exc, ErrorContext(operation, "127.0.0.1:9"))


def counts() -> dict[str, int]:
    return dict(ErrorStat.objects.values_list("operation", "count"))


@pytest.mark.django_db
def test_it_writes_one_upsert_per_fingerprint(handler, refused):
    fail(handler, refused, "a", 1000)
    fail(handler, refused, "b", 10)
    fail(handler, TimeoutError(), "c", 1)

    with CaptureQueriesContext(connection) as queries:
        assert flush_error_stats(handler) == 3
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 3
    assert counts() == {"a": 1000, "b": 10, "c": 1}
    row = ErrorStat.objects.get(operation="c")
    assert (row.category, row.severity, row.endpoint) == ("timeout", "warning", "127.0.0.1:9")


@pytest.mark.django_db
def test_with_nothing_pending_it_does_not_touch_the_database(handler, refused):
    fail(handler, refused, "a", 3)
    flush_error_stats(handler)
    with CaptureQueriesContext(connection) as queries:
        assert flush_error_stats(handler) == 0
    assert queries.captured_queries == []


@pytest.mark.django_db
def test_each_flush_adds_to_the_row(handler, refused, wall):
    fail(handler, refused, "a", 5)
    flush_error_stats(handler)
    first = ErrorStat.objects.get()
    wall.now += 90
    fail(handler, ConnectionRefusedError("refused again"), "a", 7)
    flush_error_stats(handler)

    row = ErrorStat.objects.get()
    assert row.count == 12
    assert row.first_seen == first.first_seen
    assert (row.last_seen - first.last_seen).total_seconds() == 90
    assert row.last_message == "ConnectionRefusedError: refused again"


@pytest.mark.django_db
def test_handlers_of_several_processes_add_up(refused):
    one, two = ErrorHandler(), ErrorHandler()
    fail(one, refused, "a", 4)
    fail(two, refused, "a", 6)
    flush_error_stats(one)
    flush_error_stats(two)
    assert counts() == {"a": 10}


@pytest.mark.django_db
def test_long_values_are_cut_to_the_column_sizes(handler):
    fail(handler, ConnectionError("x" * 2000), "o" * 300, 1)
    flush_error_stats(handler)
    row = ErrorStat.objects.get()
    assert len(row.last_message) == 500
    assert len(row.operation) == 200


@contextmanager
def table_renamed():
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {TABLE}_away")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {TABLE}_away RENAME TO {TABLE}")


@contextmanager
def table_locked():
    """Another connection holds a lock on the table; our insert fails instead of waiting."""
    other = connection.get_new_connection(connection.get_connection_params())
    try:
        if connection.vendor == "sqlite":
            if not connection.is_in_memory_db():
                pytest.skip("the lock test needs the shared-cache in-memory test database")
            # A reader's table lock in the shared cache: our write fails at once, and BEGIN
            # itself is not blocked (a blocked BEGIN would be retried by the database layer).
            other.execute("BEGIN")
            other.execute(f"SELECT count(*) FROM {TABLE}").fetchall()
        else:
            other.execute(f"LOCK TABLE {TABLE} IN ACCESS EXCLUSIVE MODE")
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '200ms'")
        yield
    finally:
        other.rollback()
        other.close()
        if connection.vendor != "sqlite":
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("outage", [table_renamed, table_locked], ids=["missing", "locked"])
def test_no_count_is_lost_when_the_database_fails(handler, refused, outage):
    fail(handler, refused, "a", 100)
    flush_error_stats(handler)
    fail(handler, refused, "a", 50)
    fail(handler, refused, "b", 5)

    with outage():
        assert flush_error_stats(handler) == 0
        assert flush_error_stats(handler) == 0
        fail(handler, refused, "a", 25)

    assert flush_error_stats(handler) == 3
    assert counts() == {"a": 175, "b": 5, "error_stats.flush": 2}
    stats = handler.get_error_stats()["by_fingerprint"].values()
    failure = next(s for s in stats if s["operation"] == "error_stats.flush")
    assert failure["endpoint"] == "default"
