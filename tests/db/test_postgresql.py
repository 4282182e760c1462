"""The retrying cursor against a real PostgreSQL whose sessions are terminated under it."""

from __future__ import annotations

import queue
import threading
import time

import psycopg
import pytest
from django.db import OperationalError, ProgrammingError, connections, transaction

from connections_app.db import counters
from connections_app.db.exceptions import (
    CommitOutcomeUnknown,
    RetriesExhausted,
    TransactionRetryNeeded,
)
from connections_app.db.health import check_database
from connections_app.db.retrying_cursor import retrying_execute
from connections_app.db.transactions import retry_transaction
from connections_app.error_handler import get_global_error_handler
from connections_app.models import HealthCheck
from tests.conftest import refusing_port
from tests.db.conftest import PG_ALIAS, TIMEOUT, backend_pid, delta, terminate, wait_until

pytestmark = pytest.mark.postgres

checks = HealthCheck.objects.db_manager(PG_ALIAS)


def new_check(name: str) -> HealthCheck:
    return checks.create(name=name, kind="tcp", target="127.0.0.1:9")


@pytest.mark.parametrize("pool", [False, True], ids=["persistent", "pool"])
def test_a_read_after_termination_succeeds_with_one_reconnect(pg_alias, pg_admin, pool):
    connection = pg_alias(pool=pool)
    new_check("a")
    pid = backend_pid(connection)
    before = counters.counts(PG_ALIAS)
    terminate(pg_admin, pid)
    assert checks.count() == 1
    assert delta(PG_ALIAS, before) == {"retries": 0, "reconnects": 1}
    assert backend_pid(connection) != pid
    reported = get_global_error_handler().get_error_stats()["by_fingerprint"].values()
    assert [(r["operation"], r["endpoint"], r["category"]) for r in reported] == [
        ("db.reconnect", PG_ALIAS, "db_disconnected")
    ]


def test_a_write_after_termination_is_sent_on_a_new_connection(pg, pg_admin):
    before = counters.counts(PG_ALIAS)
    terminate(pg_admin, backend_pid(pg))
    new_check("after")
    assert list(checks.values_list("name", flat=True)) == ["after"]
    assert delta(PG_ALIAS, before) == {"retries": 0, "reconnects": 1}


def test_a_write_whose_reply_was_lost_is_not_run_again(pg, pg_admin, pg_database_url):
    check = new_check("locked")
    outcome: queue.Queue = queue.Queue()
    before = counters.counts(PG_ALIAS)
    with pg_admin.transaction():
        # The row lock keeps our UPDATE waiting on the server: terminated there, its outcome
        # is unknown to the client, which must not send it again.
        pg_admin.execute(
            "SELECT 1 FROM connections_app_healthcheck WHERE id = %s FOR UPDATE", [check.pk]
        )
        worker = threading.Thread(target=_update_interval, args=(check.pk, outcome))
        worker.start()
        pid = outcome.get(timeout=TIMEOUT)
        with connections[PG_ALIAS].cursor() as watcher:
            wait_until(lambda: _waits_for_a_lock(watcher, pid), "the UPDATE waits for the lock")
        terminate_from_outside(pg_database_url, pid)
        error = outcome.get(timeout=TIMEOUT)
        worker.join(TIMEOUT)
    assert isinstance(error, OperationalError)
    assert not isinstance(error, RetriesExhausted)
    assert delta(PG_ALIAS, before) == {"retries": 0, "reconnects": 0}
    assert checks.get(pk=check.pk).interval == check.interval


def _update_interval(pk: int, outcome: queue.Queue) -> None:
    connection = connections[PG_ALIAS]
    try:
        outcome.put(backend_pid(connection))
        checks.filter(pk=pk).update(interval=99)
        outcome.put(None)
    except Exception as exc:
        outcome.put(exc)
    finally:
        connection.close()


def _waits_for_a_lock(cursor, pid: int) -> bool:
    cursor.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", [pid])
    row = cursor.fetchone()
    return row is not None and row[0] == "Lock"


def terminate_from_outside(url: str, pid: int) -> None:
    # Not from pg_admin: inside its transaction, pg_stat_activity is a frozen snapshot.
    with psycopg.connect(url, autocommit=True) as admin:
        terminate(admin, pid)


def test_inside_atomic_a_lost_connection_asks_to_retry_the_whole_block(pg, pg_admin):
    with pytest.raises(TransactionRetryNeeded, match="retry the whole block"):
        with transaction.atomic(using=PG_ALIAS):
            new_check("lost")
            terminate(pg_admin, backend_pid(pg))
            checks.count()
    assert checks.count() == 0


@pytest.mark.parametrize("form", ["decorator", "decorator with options"])
def test_retry_transaction_runs_the_block_again_without_duplicates(pg, pg_admin, form):
    runs = []

    def create_two() -> None:
        runs.append(len(runs) + 1)
        new_check("first")
        if len(runs) == 1:
            terminate(pg_admin, backend_pid(pg))
        new_check("second")

    before = counters.counts(PG_ALIAS)
    if form == "decorator":
        retry_transaction(create_two, using=PG_ALIAS)()
    else:
        retry_transaction(using=PG_ALIAS)(create_two)()
    assert runs == [1, 2]
    assert sorted(checks.values_list("name", flat=True)) == ["first", "second"]
    assert delta(PG_ALIAS, before)["retries"] == 1


def test_a_nested_retry_transaction_runs_once(pg, pg_admin):
    runs = []

    @retry_transaction(using=PG_ALIAS)
    def inner() -> None:
        runs.append(1)
        terminate(pg_admin, backend_pid(pg))
        checks.count()

    with pytest.raises(TransactionRetryNeeded), transaction.atomic(using=PG_ALIAS):
        inner()
    assert runs == [1]


def test_a_commit_that_lost_its_connection_is_reported_as_unknown(pg, pg_admin):
    runs = []

    @retry_transaction(using=PG_ALIAS)
    def create_then_lose_the_connection() -> None:
        runs.append(1)
        new_check("maybe")
        terminate(pg_admin, backend_pid(pg))

    with pytest.raises(CommitOutcomeUnknown, match="unknown"):
        create_then_lose_the_connection()
    assert runs == [1]


def test_a_syntax_error_is_raised_after_exactly_one_attempt(pg):
    executed = []

    def count(execute, sql, params, many, context):
        executed.append(sql)
        return execute(sql, params, many, context)

    before = counters.counts(PG_ALIAS)
    with pg.execute_wrapper(count), pytest.raises(ProgrammingError):
        with pg.cursor() as cursor:
            cursor.execute("SELEC 1")

    @retry_transaction(using=PG_ALIAS)
    def typo() -> None:
        with pg.execute_wrapper(count), pg.cursor() as cursor:
            cursor.execute("SELEC 2")

    with pytest.raises(ProgrammingError):
        typo()
    assert executed == ["SELEC 1", "SELEC 2"]
    assert delta(PG_ALIAS, before) == {"retries": 0, "reconnects": 0}


def test_a_server_side_cursor_is_not_retried(pg, pg_admin):
    new_check("a")
    before = counters.counts(PG_ALIAS)
    terminate(pg_admin, backend_pid(pg))
    with pytest.raises(OperationalError):
        list(checks.iterator(chunk_size=10))
    assert delta(PG_ALIAS, before) == {"retries": 0, "reconnects": 0}
    assert checks.count() == 1  # the next statement finds the connection closed and replaces it
    assert delta(PG_ALIAS, before) == {"retries": 0, "reconnects": 1}


def test_an_unreachable_server_fails_after_the_policys_attempts(pg_alias):
    connect_timeout = 2
    connection = pg_alias()
    connection.close()
    connection.settings_dict["PORT"] = refusing_port()  # nothing listens there
    connection.settings_dict["OPTIONS"]["connect_timeout"] = connect_timeout
    policy = connection.retry_policy
    before = counters.counts(PG_ALIAS)
    started = time.monotonic()
    with pytest.raises(RetriesExhausted, match="connecting .* after 3 retries"):
        checks.count()
    elapsed = time.monotonic() - started
    assert delta(PG_ALIAS, before) == {"retries": policy.attempts, "reconnects": 0}
    assert elapsed < policy.total_delay() + (policy.attempts + 1) * connect_timeout


def test_the_probe_does_not_back_off(pg_alias):
    connection = pg_alias()
    connection.close()
    connection.settings_dict["PORT"] = refusing_port()
    before = counters.counts(PG_ALIAS)
    with pytest.raises(OperationalError):
        check_database(PG_ALIAS)
    assert delta(PG_ALIAS, before) == {"retries": 0, "reconnects": 0}


def test_the_probe_replaces_a_dead_connection(pg, pg_admin):
    terminate(pg_admin, backend_pid(pg))
    assert check_database(PG_ALIAS) > 0


def test_the_health_check_closes_a_dead_connection_and_leaves_connecting_to_the_query(pg, pg_admin):
    terminate(pg_admin, backend_pid(pg))
    with pytest.raises(psycopg.OperationalError):
        pg.connection.execute("SELECT 1")  # the driver learns that its connection is dead
    port, pg.settings_dict["PORT"] = pg.settings_dict["PORT"], refusing_port()
    before = counters.counts(PG_ALIAS)
    pg.close_if_health_check_failed()  # Django's check before a request's first query
    assert pg.connection is None
    assert delta(PG_ALIAS, before) == {"retries": 0, "reconnects": 1}
    pg.settings_dict["PORT"] = port
    assert checks.count() == 0


def test_every_thread_gets_the_retrying_cursor_once(pg, pg_admin):
    seen: queue.Queue = queue.Queue()

    def in_a_thread() -> None:
        connection = connections[PG_ALIAS]
        try:
            terminate(pg_admin, backend_pid(connection))
            seen.put((connection.execute_wrappers.count(retrying_execute), checks.count()))
        except Exception as exc:
            seen.put(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(TIMEOUT)
    assert seen.get(timeout=TIMEOUT) == (1, 0)
    assert pg.execute_wrappers.count(retrying_execute) == 1
