"""The database probe and statistics of one Django database alias."""

from __future__ import annotations

import time
from collections.abc import Iterable

from django.db import DEFAULT_DB_ALIAS, connections

from connections_app.db.counters import counts
from connections_app.db.fail_fast import fail_fast

HEALTH_QUERY = "SELECT 1"
SIZE_QUERIES = {
    "postgresql": "SELECT pg_database_size(current_database())",
    "sqlite": "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
}


def check_database(alias: str = DEFAULT_DB_ALIAS) -> float:
    """Milliseconds the health-check query took on ``alias`` (connecting included if needed).

    Raises when it fails, without backing off: a probe must report a failing database, not
    wait for it. A connection of ours found dead is still replaced once, since that says
    nothing about the database.
    """
    with fail_fast():
        started = time.perf_counter()
        with connections[alias].cursor() as cursor:
            cursor.execute(HEALTH_QUERY)
            cursor.fetchone()
        return (time.perf_counter() - started) * 1000


def get_database_stats(alias: str = DEFAULT_DB_ALIAS, tables: Iterable[str] = ()) -> dict:
    """Engine, size, row counts of ``tables``, this thread's connection age, retries and
    reconnects since the process started. (The layer loads before the apps and knows no
    models: the caller names the tables.)"""
    connection = connections[alias]
    rows = {}
    with connection.cursor() as cursor:
        cursor.execute(SIZE_QUERIES[connection.vendor])
        size = cursor.fetchone()[0]
        for table in tables:
            cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
            rows[table] = cursor.fetchone()[0]
    return {
        "alias": alias,
        "engine": connection.settings_dict["ENGINE"],
        "vendor": connection.vendor,
        "size_bytes": size,
        "rows": rows,
        "connection_age_s": connection.connection_age(),
        **counts(alias),
    }
