"""``insert_many`` and ``result_rows.insert``: new rows in one statement, on both databases;
a row whose unique key is stored already is skipped, the others are written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connections_app import result_rows
from connections_app.models import CheckResult, HealthCheck
from connections_app.result_rows import ResultRow

AT = datetime(2026, 12, 1, 1, 2, 3, 456789, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request):
    if request.param == "postgres":
        return request.getfixturevalue("pg_alias")()
    return request.getfixturevalue("sqlite_alias")()


def row(check_id: int, at: datetime, ok: bool = True, **values) -> ResultRow:
    fields = {"latency_ms": 1.5, "http_status": 200, "error_category": "",
              "error_message": "", "tls_days_left": None, "ping_body": ""} | values  # fmt: skip
    return ResultRow(check_id, at, ok, **fields)


def test_rows_are_stored_with_their_values_and_a_stored_key_is_skipped(database):
    check = HealthCheck.objects.db_manager(database.alias).create(
        name="c", kind="tcp", target="127.0.0.1:9"
    )
    failed = row(check.pk, AT + timedelta(seconds=1), ok=False, latency_ms=None,
                 http_status=None, error_category="refused", error_message="no",
                 tls_days_left=-3, ping_body="body")  # fmt: skip
    result_rows.insert([row(check.pk, AT), failed], database.alias)
    # Stored again beside a new one: the stored one keeps its values, the new one is added.
    result_rows.insert([row(check.pk, AT, latency_ms=99.0), row(check.pk, AT + timedelta(2))],
                       database.alias)  # fmt: skip
    stored = CheckResult.objects.using(database.alias).order_by("checked_at")
    got = [ResultRow(r.health_check_id, *(getattr(r, f) for f in ResultRow._fields[1:]))
           for r in stored]  # fmt: skip
    assert got == [row(check.pk, AT), failed, row(check.pk, AT + timedelta(2))]


def test_nothing_to_insert_runs_no_statement(database, django_assert_num_queries):
    with django_assert_num_queries(0, connection=database):
        result_rows.insert([], database.alias)


def test_a_server_bound_cursor_takes_typed_arrays_nulls_only_included(database):
    # What rollups.add and insert_many send on PostgreSQL: one typed array per column, a
    # column of NULLs only among them.
    from connections_app.db.bound_cursor import server_bound_cursor

    params = [[1, 2], [None, None]] if database.vendor == "postgresql" else []
    sql = ("SELECT * FROM unnest(%s::bigint[], %s::double precision[])"
           if database.vendor == "postgresql" else "SELECT 1, NULL")  # fmt: skip
    with server_bound_cursor(database) as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        bound = type(cursor.cursor).__name__
    if database.vendor == "postgresql":
        assert (rows, bound) == ([(1, None), (2, None)], "Cursor")
    else:
        assert rows == [(1, None)]


def test_text_longer_than_its_column_is_refused_not_cut_on_postgresql(pg_alias):
    from django.db import DataError, transaction

    database = pg_alias()
    check = HealthCheck.objects.db_manager(database.alias).create(
        name="c", kind="tcp", target="127.0.0.1:9"
    )
    limit = CheckResult._meta.get_field("error_category").max_length
    with pytest.raises(DataError, match="too long"), transaction.atomic(using=database.alias):
        result_rows.insert([row(check.pk, AT, error_category="x" * (limit + 1))], database.alias)
    assert not CheckResult.objects.using(database.alias).exists()
