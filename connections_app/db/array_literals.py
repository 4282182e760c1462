"""A column of values as PostgreSQL's text form of an array (``{1,NULL,3}``), made with joins.

The batch statements (``insert_many``, ``update_many``, ``rollups.add``) send each column as
one typed array (``%s::bigint[]``). Handed a Python list, psycopg dumps it element by element
in Python (a dumper look-up, a regular expression for quoting): a sixth of a busy runner's CPU
on PostgreSQL at 500 results/s (py-spy, docs/BENCHMARKS.md). The text built here costs one
``str.join`` per column for numbers and times; the server parses it in C (``array_in``), as it
would parse psycopg's own text. Sent as a string, the parameter's type is the cast's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import datetime

#: Database types whose values are written bare: numbers (``str`` of an int or a float is a
#: literal PostgreSQL reads, ``inf`` and ``nan`` included).
_NUMBERS = ("bigint", "integer", "smallint", "double precision", "real", "numeric")


#: A length-limited character type: ``varchar(200)``, ``character varying(4)``, ``char(2)``.
_SIZED_TEXT = re.compile(r"(?:var)?char(?:acter)?(?: varying)?\(\d+\)")


def unnest_arrays(db_types: Sequence[str]) -> str:
    """``unnest(%s::type[], ...)``: a batch's rows as one array per column of ``db_types``,
    the parameters ``column_arrays`` makes."""
    return f"unnest({', '.join(f'%s::{array_of(db_type)}' for db_type in db_types)})"


def column_arrays(rows: Sequence[Sequence], db_types: Sequence[str]) -> list[str]:
    """``rows`` (values prepared for the database, in the order of ``db_types``) as one array
    literal per column."""
    columns = zip(*rows, strict=True)
    return [array_literal(c, db_type) for c, db_type in zip(columns, db_types, strict=True)]


def array_of(db_type: str) -> str:
    """The array type a column's values travel as: the column's own, except text of limited
    length, sent as ``text[]``. An explicit cast to ``varchar(n)`` cuts a longer value
    silently; storing text into the column raises instead, as the ORM does."""
    return "text[]" if _SIZED_TEXT.fullmatch(db_type) else f"{db_type}[]"


def array_literal(values: Sequence, db_type: str) -> str:
    """``values`` (prepared for the database; None is NULL) as the text of a ``db_type[]``."""
    return "{" + ",".join(_elements(values, db_type)) + "}"


def _elements(values: Sequence, db_type: str) -> list[str]:
    write = _writer(db_type)
    if None not in values:
        return list(map(write, values))
    return ["NULL" if value is None else write(value) for value in values]


def _writer(db_type: str) -> Callable[[object], str]:
    if db_type.startswith(_NUMBERS):
        return str
    if db_type == "boolean":
        return _boolean
    if db_type.startswith("timestamp"):
        return datetime.isoformat  # no space, no comma: nothing to quote
    return _quoted


def _boolean(value: object) -> str:
    return "t" if value else "f"


def _quoted(value: object) -> str:
    """Any text, in double quotes with its backslashes and double quotes escaped: an empty
    string, ``NULL``, braces, commas and spaces stay text."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
