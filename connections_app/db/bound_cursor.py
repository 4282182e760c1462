"""A cursor whose values the server binds, for statements that carry them as arrays.

Django's PostgreSQL backend (psycopg 3, ``server_side_binding`` off) quotes every value into
the statement's text on the client: for a batch's rows as one array per column (``unnest``)
that is Python quoting every element, about a tenth of a runner's CPU at 1,000 results/s
(py-spy). Here such a statement is sent with its values as parameters instead (psycopg's
``Cursor``): the text stays fixed, psycopg dumps each array in one go, and the server reads it.

Only for statements whose every parameter has an explicit type (``%s::bigint[]``): a server-
bound parameter of unknown type can fail where a quoted literal would not. The cursor is
Django's wrapper all the same, so the execute wrappers (the retrying cursor) apply.
"""

from __future__ import annotations

import contextlib
import re
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


#: A length-limited character type: ``varchar(200)``, ``character varying(4)``, ``char(2)``.
_SIZED_TEXT = re.compile(r"(?:var)?char(?:acter)?(?: varying)?\(\d+\)")


def array_of(db_type: str) -> str:
    """The array type a column's values travel as (``%s::{array_of(t)}``): the column's own,
    except text of limited length, sent as ``text[]``. An explicit cast to ``varchar(n)`` cuts
    a longer value silently; storing text into the column raises instead, as the ORM does."""
    return "text[]" if _SIZED_TEXT.fullmatch(db_type) else f"{db_type}[]"
