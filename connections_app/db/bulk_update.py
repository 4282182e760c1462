"""Many rows' new values in one UPDATE statement.

``bulk_update`` builds one ``CASE WHEN`` per row and field, which costs more to parse than the
work it asks for; ``executemany`` runs one statement per row. Here the values travel with one
statement for the batch, joined to the table by key: on PostgreSQL as one array per column
(``unnest``), bound by the server (``bound_cursor``: the client quoting each value was a tenth
of a busy runner's CPU); on SQLite (3.33+) as a ``VALUES`` list, a statement per chunk of rows.
"""

from __future__ import annotations

from collections.abc import Sequence

from connections_app.db.bound_cursor import array_of, server_bound_cursor

#: Bound parameters per statement: SQLite allows 32,766, PostgreSQL 65,535.
MAX_PARAMETERS = 30_000


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
    quote = connection.ops.quote_name
    names = [name for name, _type in columns]
    assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in names)
    width = len(columns) + 1
    per_statement = max(1, MAX_PARAMETERS // width)
    one_row = "(" + ", ".join(["%s"] * width) + ")"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            sql = (
                f"WITH v ({', '.join(map(quote, [*names, key]))}) AS "
                f"(VALUES {', '.join([one_row] * len(chunk))}) "
                f"UPDATE {quote(table)} SET {assignments} FROM v "
                f"WHERE {quote(table)}.{quote(key)} = v.{quote(key)}"
            )
            cursor.execute(sql, [value for row in chunk for value in row])


def _update_from_arrays(connection, table: str, key: str, columns, rows) -> None:
    """PostgreSQL: every column one typed array, whatever the number of rows (the statement's
    text and plan are the same for any batch)."""
    quote = connection.ops.quote_name
    names = [quote(name) for name, _type in columns]
    arrays = ", ".join(
        [f"%s::{array_of(db_type)}" for _name, db_type in columns] + ["%s::bigint[]"]
    )
    assignments = ", ".join(f"{name} = v.{name}" for name in names)
    sql = (
        f"UPDATE {quote(table)} SET {assignments} "
        f"FROM unnest({arrays}) AS v ({', '.join([*names, quote(key)])}) "
        f"WHERE {quote(table)}.{quote(key)} = v.{quote(key)}"
    )
    with server_bound_cursor(connection) as cursor:
        cursor.execute(sql, [list(column) for column in zip(*rows, strict=True)])
