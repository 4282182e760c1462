"""``array_literal``: what PostgreSQL reads back from the text is exactly the values given."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connections_app.db.array_literals import array_literal
from connections_app.db.bound_cursor import server_bound_cursor

AT = datetime(2026, 12, 1, 1, 2, 3, 456789, tzinfo=UTC)

COLUMNS = [
    ("bigint", [1, None, -3, 2**62]),
    ("smallint", [200, 0]),
    ("double precision", [1.5, None, 1e-05, 0.1 + 0.2, 12345678.901234]),
    ("boolean", [True, False, None]),
    ("timestamp with time zone", [AT, None, AT + timedelta(days=400, microseconds=1)]),
    ("varchar(500)", ["", "NULL", "a,b", "{x}", 'say "hi"', "back\\slash", " spaced ", None]),
    ("text", ["line\nbreak\ttab", "ünïcödé ✓", "[[1,1,2.5],[2,0,null]]", '\\"', "'"]),
    ("bigint", []),
    ("double precision", [None, None]),
]


@pytest.mark.parametrize(("db_type", "values"), COLUMNS)
def test_postgresql_reads_back_the_values_given(pg, db_type, values):
    with server_bound_cursor(pg) as cursor:
        cursor.execute(f"SELECT %s::{db_type}[]", [array_literal(values, db_type)])
        (stored,) = cursor.fetchone()
    assert stored == values


def test_numbers_and_times_are_written_bare_and_text_quoted():
    assert array_literal([1, None, 2.5], "bigint") == "{1,NULL,2.5}"
    assert array_literal([AT], "timestamp with time zone") == "{2026-12-01T01:02:03.456789+00:00}"
    assert array_literal(['a"b', None], "text") == '{"a\\"b",NULL}'
