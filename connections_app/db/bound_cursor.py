"""A cursor whose values the server binds, for statements that carry them as arrays.

Django's PostgreSQL backend (psycopg 3, ``server_side_binding`` off) quotes every value into
the statement's text on the client: for a batch's rows as one array per column (``unnest``)
that is Python quoting every element, about a tenth of a runner's CPU at 1,000 results/s
(py-spy). Here such a statement is sent with its values as parameters instead (psycopg's
``Cursor``): the text stays fixed and each array (its text, ``array_literals``) goes as one
parameter the server reads.

Only for statements whose every parameter has an explicit type (``%s::bigint[]``): a server-
bound parameter of unknown type can fail where a quoted literal would not. The cursor is
Django's wrapper all the same, so the execute wrappers (the retrying cursor) apply.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg


@contextlib.contextmanager
def server_bound_cursor(connection) -> Iterator:
    """``connection.cursor()``, with a server-binding driver cursor on PostgreSQL."""
    with connection.cursor() as wrapper:
        if connection.vendor == "postgresql":
            client = wrapper.cursor
            with connection.wrap_database_errors:
                wrapper.cursor = psycopg.Cursor(client.connection)
            client.close()
        yield wrapper
