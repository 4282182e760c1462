"""A probe's result as a batch stores it: a plain tuple, not a model instance.

A runner stores about a thousand results a second; a ``CheckResult`` instance per result, and
``bulk_create`` preparing its nine values field by field, cost more CPU than the insert itself.
The state machine (``state.apply_result``), the rollups and the transitions read the same
attribute names from a ``ResultRow`` as from a ``CheckResult``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from django.db import connections

from connections_app.db.bulk_insert import insert_many
from connections_app.models import CheckResult


class ResultRow(NamedTuple):
    """One ``CheckResult`` row's values, by its field names."""

    health_check_id: int
    checked_at: datetime
    ok: bool
    latency_ms: float | None
    http_status: int | None
    error_category: str
    error_message: str
    tls_days_left: int | None
    ping_body: str


def insert(rows: Sequence[ResultRow], using: str) -> None:
    """Insert ``rows`` in one statement (a chunk of them on SQLite); a row whose (check,
    checked_at) is already stored is skipped, so a batch stored twice is stored once."""
    connection = connections[using]
    meta = CheckResult._meta
    fields = [meta.get_field(name) for name in ResultRow._fields]
    columns = [(f.column, f.cast_db_type(connection)) for f in fields]
    # Only the time needs the backend's form (SQLite: naive UTC text); the rest is stored as
    # the probe left it.
    adapt = connection.ops.adapt_datetimefield_value
    values = [(row[0], adapt(row[1]), *row[2:]) for row in rows]
    insert_many(connection, meta.db_table, columns, values)
