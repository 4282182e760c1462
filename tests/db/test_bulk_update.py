"""``update_many``: many rows' new values in one statement, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.db.backends.utils import CursorWrapper

from connections_app.db.bulk_update import update_many
from connections_app.models import HealthCheck


@pytest.fixture(params=["sqlite", "postgres"])
def database(request):
    if request.param == "postgres":
        return request.getfixturevalue("pg_alias")()
    return request.getfixturevalue("sqlite_alias")()


def test_rows_get_their_own_values_nulls_included_in_one_statement(database, monkeypatch):
    checks = HealthCheck.objects.db_manager(database.alias)
    made = [checks.create(name=f"c{n}", kind="tcp", target="127.0.0.1:9") for n in range(3)]
    checks.filter(pk=made[2].pk).update(failures_in_a_row=5, last_error_message="kept")
    at = datetime(2026, 12, 1, 1, 2, 3, tzinfo=UTC)
    meta = HealthCheck._meta
    names = ["last_checked_at", "last_latency_ms", "last_error_message", "failures_in_a_row"]
    fields = [meta.get_field(name) for name in names]
    columns = [(f.column, f.cast_db_type(database)) for f in fields]
    values = {
        made[0].pk: [at, 1.5, "refused", 2],
        made[1].pk: [None, None, "", 0],  # a column of NULLs only must still be typed
    }
    rows = [
        [f.get_db_prep_save(v, database) for f, v in zip(fields, row, strict=True)] + [pk]
        for pk, row in values.items()
    ]
    statements = []
    for method in ("execute", "executemany"):  # SQLite: one statement run for every row
        original = getattr(CursorWrapper, method)
        monkeypatch.setattr(
            CursorWrapper, method, lambda self, sql, params=None, original=original:
            statements.append(sql) or original(self, sql, params)
        )  # fmt: skip
    update_many(database, meta.db_table, meta.pk.column, columns, rows)
    assert len(statements) == 1
    stored = {c.pk: [getattr(c, n) for n in names] for c in checks.all()}
    assert stored[made[0].pk] == [at, 1.5, "refused", 2]
    assert stored[made[1].pk] == [None, None, "", 0]
    assert stored[made[2].pk] == [None, None, "kept", 5]  # not in the list: untouched


def test_text_longer_than_its_column_is_refused_not_cut_on_postgresql(pg_alias):
    from django.db import DataError, transaction

    database = pg_alias()
    checks = HealthCheck.objects.db_manager(database.alias)
    check = checks.create(name="c", kind="tcp", target="127.0.0.1:9", last_error_category="kept")
    meta = HealthCheck._meta
    field = meta.get_field("last_error_category")
    columns = [(field.column, field.cast_db_type(database))]
    with pytest.raises(DataError, match="too long"), transaction.atomic(using=database.alias):
        update_many(database, meta.db_table, meta.pk.column, columns, [["x" * 500, check.pk]])
    assert checks.get(pk=check.pk).last_error_category == "kept"
