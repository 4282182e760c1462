"""Many new rows in one INSERT statement, skipping those whose unique key is already stored.

``bulk_create`` makes a model instance per row and prepares every value field by field, which
cost more than the database's work for a batch of results; here the rows arrive as plain
tuples, already prepared. Statements go through the connection's cursor, so the execute
wrappers (the retrying cursor) apply as to any other; called inside ``transaction.atomic``, a
lock or a lost connection re-runs the whole transaction (``retry_transaction``), the one retry
that is safe for ``executemany`` too.
"""

from __future__ import annotations

from collections.abc import Sequence

from connections_app.db.array_literals import column_arrays, unnest_arrays
from connections_app.db.bound_cursor import server_bound_cursor


def insert_many(
    connection,
    table: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence],
) -> None:
    """Insert ``rows`` (values prepared for the database, in the order of ``columns``: name,
    database type) into ``table``; a row that conflicts with a unique key is skipped.

    On PostgreSQL the rows travel as one array per column (``unnest``): the statement's text
    and plan are the same for any number of rows. On SQLite, one row's statement run for every
    row (``executemany``): prepared once, in-process, no round trips, where a long ``VALUES``
    list cost more to build and translate (Django rewrites each ``%s``) than to run.
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    names = ", ".join(quote(name) for name, _type in columns)
    head = f"INSERT INTO {quote(table)} ({names}) "
    with server_bound_cursor(connection) as cursor:
        if connection.vendor == "postgresql":
            types = [db_type for _name, db_type in columns]
            source = f"SELECT * FROM {unnest_arrays(types)}"
            cursor.execute(f"{head}{source} ON CONFLICT DO NOTHING", column_arrays(rows, types))
            return
        one_row = "(" + ", ".join(["%s"] * len(columns)) + ")"
        cursor.executemany(f"{head}VALUES {one_row} ON CONFLICT DO NOTHING", rows)
