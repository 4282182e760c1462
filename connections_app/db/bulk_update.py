"""Many rows' new values in one UPDATE statement.

``bulk_update`` builds one ``CASE WHEN`` per row and field, which costs more to parse than the
work it asks for; ``executemany`` runs one statement per row. Here the values travel as a
``VALUES`` list joined to the table by key, one statement per chunk of rows (SQLite 3.33+ and
PostgreSQL both read ``WITH ... UPDATE ... FROM``).
"""

from __future__ import annotations

from collections.abc import Sequence

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

    ``rows`` hold the values already prepared for the database, key last. PostgreSQL types a
    ``VALUES`` column from its values (all NULL would be text), so there each value is cast to
    its column's type; SQLite stores what it is given.
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    names = [name for name, _type in columns]
    cast = connection.vendor == "postgresql"
    assignments = ", ".join(
        f"{quote(name)} = CAST(v.{quote(name)} AS {db_type})" if cast else f"{quote(name)} = v.{quote(name)}"  # noqa: E501
        for name, db_type in columns
    )
    width = len(columns) + 1
    per_statement = max(1, MAX_PARAMETERS // width)
    one_row = "(" + ", ".join(["%s"] * width) + ")"
    key_cast = f"CAST(v.{quote(key)} AS bigint)" if cast else f"v.{quote(key)}"
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            chunk = rows[start : start + per_statement]
            sql = (
                f"WITH v ({', '.join(map(quote, [*names, key]))}) AS "
                f"(VALUES {', '.join([one_row] * len(chunk))}) "
                f"UPDATE {quote(table)} SET {assignments} FROM v "
                f"WHERE {quote(table)}.{quote(key)} = {key_cast}"
            )
            cursor.execute(sql, [value for row in chunk for value in row])
