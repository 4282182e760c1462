"""Database settings from the environment: defaults, the pool rule, one-line start-up errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from project.config import database_config
from tests.test_config import manage

PG_URL = "postgres://app:hunter2@127.0.0.1:5432/health"


def test_postgresql_keeps_connections_checks_them_and_bounds_the_connect():
    config = database_config(PG_URL, Path("."))
    assert (config["CONN_MAX_AGE"], config["CONN_HEALTH_CHECKS"]) == (60, True)
    assert config["OPTIONS"]["connect_timeout"] == 5
    assert config["OPTIONS"]["keepalives"] == 1
    assert config["RETRY"] == {"attempts": 3, "base_delay": 1.0, "cap": 4.0}


def test_sqlite_queues_writers_instead_of_failing():
    config = database_config(None, Path("/srv/app"), busy_timeout=2.5)
    assert config["OPTIONS"] == {
        "timeout": 2.5,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
    assert (config["CONN_MAX_AGE"], config["CONN_HEALTH_CHECKS"]) == (0, True)


def test_options_in_the_url_win_over_the_defaults():
    config = database_config(f"{PG_URL}?connect_timeout=2", Path("."))
    assert config["OPTIONS"]["connect_timeout"] == 2


def test_the_pool_needs_no_conn_max_age_and_gets_one_of_0():
    config = database_config(PG_URL, Path("."), pool=True, connect_timeout=3)
    assert config["CONN_MAX_AGE"] == 0
    assert config["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 10, "timeout": 3}


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        (PG_URL, {"pool": True, "conn_max_age": 60}, "DB_POOL: .*CONN_MAX_AGE must be 0"),
        (None, {"pool": True}, "DB_POOL: only PostgreSQL"),
        (PG_URL, {"retry_attempts": -1}, "DB_RETRY_ATTEMPTS: must be 0 or more"),
        (PG_URL, {"conn_max_age": -5}, "CONN_MAX_AGE: must be 0 or more"),
    ],
)
def test_contradictions_stop_start_up(url, options, message):
    with pytest.raises(ImproperlyConfigured, match=f"^{message}"):
        database_config(url, Path("."), **options)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DATABASE_URL": PG_URL, "DB_POOL": "true", "CONN_MAX_AGE": "60"}, "DB_POOL"),
        ({"DB_RETRY_BASE_DELAY": "soon"}, "DB_RETRY_BASE_DELAY"),
    ],
)
def test_a_bad_database_variable_is_one_line_at_start_up(env, variable):
    run = manage("check", **env)
    assert run.returncode == 3
    assert run.stderr.startswith(f"configuration error: {variable}: ")
    assert len(run.stderr.strip().splitlines()) == 1
    assert "hunter2" not in run.stderr
