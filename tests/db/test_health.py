"""The database probe and statistics, on a SQLite file and on PostgreSQL."""

from __future__ import annotations

import pytest

from connections_app.db import counters
from connections_app.db.health import check_database, get_database_stats
from connections_app.management.commands.dbstats import OUR_TABLES
from connections_app.models import HealthCheck
from tests.db.conftest import PG_ALIAS, SQLITE_ALIAS


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def alias(request) -> str:
    if request.param == "sqlite":
        request.getfixturevalue("sqlite_alias")()
        return SQLITE_ALIAS
    request.getfixturevalue("pg_alias")()
    return PG_ALIAS


def test_the_probe_reports_the_health_check_latency(alias):
    assert 0 < check_database(alias) < 5000


def test_stats_describe_the_database_and_our_use_of_it(alias):
    HealthCheck.objects.using(alias).create(name="a", kind="tcp", target="127.0.0.1:9")
    stats = get_database_stats(alias, OUR_TABLES)
    assert stats["engine"].startswith("connections_app.db.backends.")
    assert stats["size_bytes"] > 0
    assert stats["rows"] == {
        "connections_app_healthcheck": 1,
        "connections_app_checkresult": 0,
        "connections_app_errorstat": 0,
    }
    assert stats["connection_age_s"] >= 0
    assert (stats["retries"], stats["reconnects"]) == (0, 0)


def test_stats_count_the_retries_and_reconnects_of_their_alias_only(alias, refused):
    counters.record_retry(alias, refused)
    counters.record_retry(alias, refused)
    counters.record_reconnect(alias, refused)
    counters.record_retry("another", refused)
    stats = get_database_stats(alias)
    assert (stats["retries"], stats["reconnects"]) == (2, 1)
