"""Connecting: a server that said "no" fails at once; one that is down or starting is retried.

psycopg gives no SQLSTATE for a failed connection attempt, so these tests use the answers
themselves: the real server refusing a database or role that does not exist, and a fake
server (tests/db/fake_postgres.py) for the answers the real one never gives here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from connections_app.db import counters
from connections_app.db.exceptions import ConnectionRejected, RetriesExhausted
from connections_app.errors import ErrorCategory, classify
from connections_app.models import HealthCheck
from project.config import database_config
from tests.conftest import refusing_port
from tests.db.conftest import FAST_RETRY, PG_ALIAS, REPO, delta, temporary_alias
from tests.db.fake_postgres import PASSWORD_REQUEST, FakePostgres, fatal

checks = HealthCheck.objects.db_manager(PG_ALIAS)
NO_COUNTS = {"retries": 0, "reconnects": 0}
#: Waits of 5, 10 and 20 s: a test that retried by mistake would time out, not pass slowly.
SLOW_RETRY = {"retry_attempts": 3, "retry_base_delay": 5.0}


@pytest.fixture
def alias_on_port(django_db_blocker) -> Iterator[Callable]:
    """Register ``PG_ALIAS`` on a loopback port, with any ``database_config`` options."""
    with ExitStack() as stack:

        def register(port: int, **options):
            stack.enter_context(django_db_blocker.unblock())
            config = database_config(f"postgres://postgres@127.0.0.1:{port}/test", REPO, **options)
            return stack.enter_context(temporary_alias(PG_ALIAS, config))

        yield register


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("setting", "value"),
    [("NAME", "ch_no_such_database"), ("USER", "ch_no_such_role")],
    ids=["database", "role"],
)
def test_a_name_the_server_does_not_know_fails_at_once_and_says_so(pg_alias, setting, value):
    connection = pg_alias(**SLOW_RETRY)
    connection.close()
    connection.settings_dict[setting] = value
    before = counters.counts(PG_ALIAS)
    with pytest.raises(ConnectionRejected, match=f'not retried.*"{value}" does not exist') as info:
        checks.count()
    assert delta(PG_ALIAS, before) == NO_COUNTS
    assert classify(info.value) is ErrorCategory.AUTH  # not db_disconnected: never retried


def test_a_server_that_asks_for_a_password_we_lack_fails_at_once(alias_on_port):
    with FakePostgres(PASSWORD_REQUEST) as server:
        alias_on_port(server.port, **SLOW_RETRY)
        before = counters.counts(PG_ALIAS)
        with pytest.raises(ConnectionRejected, match="no password supplied"):
            checks.count()
    assert server.attempts == 1
    assert delta(PG_ALIAS, before) == NO_COUNTS


@pytest.mark.parametrize(
    "reply",
    [
        fatal("57P03", "the database system is starting up"),
        fatal("53300", "sorry, too many clients already"),
    ],
    ids=["starting-up", "too-many-clients"],
)
def test_a_server_that_says_come_back_later_is_retried(alias_on_port, reply):
    with FakePostgres(reply) as server:
        connection = alias_on_port(server.port, **FAST_RETRY)
        before = counters.counts(PG_ALIAS)
        with pytest.raises(RetriesExhausted, match="after 3 retries") as info:
            checks.count()
    assert server.attempts == connection.retry_policy.attempts + 1
    assert delta(PG_ALIAS, before) == {"retries": 3, "reconnects": 0}
    assert classify(info.value) is ErrorCategory.DB_DISCONNECTED


def test_a_port_nobody_listens_on_is_retried(alias_on_port):
    connection = alias_on_port(refusing_port(), **FAST_RETRY)
    before = counters.counts(PG_ALIAS)
    with pytest.raises(RetriesExhausted, match="Connection refused"):
        checks.count()
    assert delta(PG_ALIAS, before) == {"retries": connection.retry_policy.attempts, "reconnects": 0}
