"""Many rows' new values in one statement.

``bulk_update`` builds one ``CASE WHEN`` per row and field, which costs more to parse than the
work it asks for. On PostgreSQL the values travel with one statement for the batch, joined to
the table by key, as one array per column (``unnest``), each array as its text
(``array_literals``), bound by the server (``bound_cursor``: the client quoting each value was
a tenth of a busy runner's CPU): one round trip. On SQLite, in-process, there is no round trip
to save: one row's statement, prepared once, is run for every row (``executemany``).
"""

from __future__ import annotations

from collections.abc import Sequence

from connections_app.db.array_literals import column_arrays, unnest_arrays
from connections_app.db.bound_cursor import server_bound_cursor


def update_many(
    connection,
    table: str,
    key: str,
    columns: Sequence[tuple[str, str]],
    rows: Sequence[Sequence],
) -> None:
    """Set ``columns`` (name, database type) of the rows whose ``key`` is each row's last value.

    ``rows`` hold the values already prepared for the database, key last. PostgreSQL gets
    each column as an array of its type (a column of NULLs only is typed too); SQLite stores
    what it is given.
    """
    if not rows:
        return
    if connection.vendor == "postgresql":
        _update_from_arrays(connection, table, key, columns, rows)
        return
    # SQLite, in-process: one row's UPDATE prepared once and run for every row (no round
    # trips to save); a VALUES list of a dozen parameters a row cost more to build, and for
    # Django to rewrite parameter by parameter, than the update itself.
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(name)} = %s" for name, _type in columns)
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {quote(table)} SET {assignments} WHERE {quote(key)} = %s", rows)


def _update_from_arrays(connection, table: str, key: str, columns, rows) -> None:
    """PostgreSQL: every column one typed array, whatever the number of rows (the statement's
    text and plan are the same for any batch)."""
    quote = connection.ops.quote_name
    names = [quote(name) for name, _type in columns]
    types = [db_type for _name, db_type in columns] + ["bigint"]
    assignments = ", ".join(f"{name} = v.{name}" for name in names)
    sql = (
        f"UPDATE {quote(table)} SET {assignments} "
        f"FROM {unnest_arrays(types)} AS v ({', '.join([*names, quote(key)])}) "
        f"WHERE {quote(table)}.{quote(key)} = v.{quote(key)}"
    )
    with server_bound_cursor(connection) as cursor:
        cursor.execute(sql, column_arrays(rows, types))
