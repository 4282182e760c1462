"""Sorting rows by values computed in Python (``admin_lists.SortKey``, ``db.sort_keys``), on
both databases: each row gets its own value, a row without one gets NULL."""

from __future__ import annotations

import pytest
from django.db.models import F

from connections_app.admin_lists import SortKey
from connections_app.db import sort_keys
from connections_app.models import HealthCheck


@pytest.fixture(params=["sqlite", "postgres"])
def database(request):
    if request.param == "postgres":
        return request.getfixturevalue("pg_alias")()
    return request.getfixturevalue("sqlite_alias")()


def test_rows_sort_by_the_values_sent_with_the_query(database):
    checks = HealthCheck.objects.db_manager(database.alias)
    made = {n: checks.create(name=n, kind="tcp", target="127.0.0.1:9").pk for n in "abcd"}
    values = {made["a"]: 99.5, made["b"]: 12.25, made["c"]: 100.0}  # "d": no figure
    rows = checks.annotate(key=SortKey(values)).filter(pk__in=made.values())
    ascending = rows.order_by(F("key").asc(nulls_last=True), "name")
    assert [(c.name, c.key) for c in ascending] == [
        ("b", 12.25), ("a", 99.5), ("c", 100.0), ("d", None),
    ]  # fmt: skip
    descending = rows.order_by(F("key").desc(nulls_last=True), "name")
    assert [c.name for c in descending] == ["c", "a", "b", "d"]


def test_sqlite_keeps_only_the_latest_value_sets():
    tokens = [sort_keys.remember({1: float(n)}) for n in range(sort_keys.KEPT + 1)]
    assert sort_keys.lookup(tokens[0], 1) is None  # the oldest is gone
    assert sort_keys.lookup(tokens[-1], 1) == float(sort_keys.KEPT)
    assert sort_keys.lookup(tokens[-1], 2) is None
