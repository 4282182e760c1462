"""A long-running loop keeps its connection between units of work (``close_stale_connection``):
at least ``KEEP_FOR`` seconds whatever ``CONN_MAX_AGE`` says, longer when it says so, and one
that had an error is looked at at once."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction

from connections_app.db import loop_connection
from connections_app.db.loop_connection import close_stale_connection


def _age(connection, seconds: float) -> None:
    # The clock of the connection's age: when it connected, moved back.
    connection.connected_at -= seconds


@pytest.fixture(params=["sqlite", "postgres"])
def connect(request):
    register = request.getfixturevalue(
        "pg_alias" if request.param == "postgres" else "sqlite_alias"
    )

    def connect(**options):
        connection = register(**options)
        connection.ensure_connection()
        return connection

    return connect


def test_with_conn_max_age_0_a_loop_keeps_its_connection_for_keep_for_seconds(connect):
    connection = connect(conn_max_age=0)
    opened = connection.connection
    for _ in range(3):
        close_stale_connection(connection.alias)
        assert connection.connection is opened
    _age(connection, loop_connection.KEEP_FOR + 1)
    close_stale_connection(connection.alias)
    assert connection.connection is None


def test_a_longer_conn_max_age_still_holds(connect):
    connection = connect(conn_max_age=3600)
    opened = connection.connection
    _age(connection, loop_connection.KEEP_FOR + 1)
    close_stale_connection(connection.alias)
    assert connection.connection is opened


def test_a_young_connection_that_had_an_error_is_looked_at_at_once(connect):
    connection = connect(conn_max_age=0)
    with pytest.raises(DatabaseError), connection.cursor() as cursor:
        cursor.execute("SELECT * FROM no_such_table")
    assert connection.errors_occurred
    close_stale_connection(connection.alias)
    assert connection.connection is None  # usable, but past CONN_MAX_AGE 0: renewed


def test_inside_a_transaction_nothing_is_closed(connect):
    connection = connect(conn_max_age=0)
    _age(connection, loop_connection.KEEP_FOR + 1)
    with transaction.atomic(using=connection.alias):
        opened = connection.connection
        close_stale_connection(connection.alias)
        assert connection.connection is opened
