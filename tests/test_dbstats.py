"""``manage.py dbstats``: a database's statistics as a table or JSON; one line when it is down."""

from __future__ import annotations

import json

import pytest

from tests.conftest import manage, refusing_port


def test_it_prints_the_statistics_as_a_table(sqlite_file_env):
    run = manage(sqlite_file_env, "dbstats")
    assert run.returncode == 0, run.stderr
    rows = [line.rsplit(None, 1) for line in run.stdout.splitlines()]
    assert ["engine", "connections_app.db.backends.sqlite3"] in rows
    assert ["rows in connections_app_healthcheck", "2"] in rows  # the migration's self-checks
    assert ["retries", "0"] in rows


def test_it_prints_the_statistics_as_json(sqlite_file_env):
    run = manage(sqlite_file_env, "dbstats", "--format", "json", "--database", "default")
    assert run.returncode == 0, run.stderr
    stats = json.loads(run.stdout)
    assert stats["alias"] == "default" and stats["vendor"] == "sqlite"
    assert stats["size_bytes"] > 0
    assert stats["rows"]["connections_app_checkresult"] == 0
    assert (stats["retries"], stats["reconnects"]) == (0, 0)


def test_a_database_that_is_down_is_one_line_and_exit_3_at_once(sqlite_file_env):
    url = f"postgres://app:hunter2@127.0.0.1:{refusing_port()}/health"
    run = dbstats_on(sqlite_file_env, url)
    assert "Connection refused" in run.stderr
    assert "hunter2" not in run.stderr


@pytest.mark.postgres
def test_a_database_the_server_does_not_know_is_one_line_and_exit_3(sqlite_file_env, postgres_url):
    run = dbstats_on(sqlite_file_env, postgres_url.rsplit("/", 1)[0] + "/ch_no_such_database")
    assert '"ch_no_such_database" does not exist' in run.stderr


def test_a_database_never_migrated_says_to_migrate(sqlite_file_env, tmp_path):
    run = dbstats_on(sqlite_file_env, f"sqlite:///{tmp_path}/empty.sqlite3")
    assert "run `manage.py migrate`" in run.stderr


def dbstats_on(env: dict, url: str):
    """``dbstats`` on ``url``, checked to fail with exit 3 and one line."""
    # Waits of 5, 10 and 20 s if it backed off: the child's timeout would stop it first.
    run = manage(env | {"DATABASE_URL": url, "DB_RETRY_BASE_DELAY": "5"}, "dbstats", timeout=30)
    assert run.returncode == 3
    assert run.stderr.startswith("CommandError: cannot read database 'default': ")
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    return run


def test_a_command_line_mistake_exits_3_with_the_usage(sqlite_file_env):
    run = manage(sqlite_file_env, "dbstats", "--bogus")
    assert run.returncode == 3, run.stderr
    assert "usage:" in run.stderr and "--bogus" in run.stderr
