"""``fail_fast()``: inside it (web requests, probes) nothing is backed off and retried."""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError
from django.http import HttpResponse
from django.test import RequestFactory

from connections_app import retry
from connections_app.db import counters
from connections_app.db.exceptions import RetriesExhausted
from connections_app.db.fail_fast import fail_fast, fail_fast_middleware, policy_here
from connections_app.db.transactions import retry_transaction
from connections_app.models import HealthCheck
from tests.conftest import refusing_port
from tests.db.conftest import PG_ALIAS, SQLITE_ALIAS, TIMEOUT, delta

NO_COUNTS = {"retries": 0, "reconnects": 0}
#: Waits of 5, 10 and 20 s: a test that retried by mistake would time out, not pass slowly.
SLOW_RETRY = {"retry_attempts": 3, "retry_base_delay": 5.0}


@pytest.mark.postgres
def test_a_down_server_costs_one_connect_attempt(pg_alias):
    connection = pg_alias(**SLOW_RETRY)
    connection.close()
    connection.settings_dict["PORT"] = refusing_port()
    before = counters.counts(PG_ALIAS)
    with fail_fast(), pytest.raises(OperationalError, match="Connection refused") as info:
        HealthCheck.objects.using(PG_ALIAS).count()
    assert not isinstance(info.value, RetriesExhausted)
    assert delta(PG_ALIAS, before) == NO_COUNTS


@pytest.mark.parametrize("how", ["autocommit", "retry_transaction"])
def test_a_locked_sqlite_write_is_tried_once(sqlite_alias, hold_write_lock, how):
    connection = sqlite_alias(busy_timeout=0.2, **SLOW_RETRY)
    hold_write_lock(connection.settings_dict["NAME"], TIMEOUT)
    checks = HealthCheck.objects.db_manager(SQLITE_ALIAS)
    create = checks.create
    if how == "retry_transaction":
        create = retry_transaction(using=SQLITE_ALIAS)(create)
    before = counters.counts(SQLITE_ALIAS)
    with fail_fast(), pytest.raises(OperationalError, match="database is locked") as info:
        create(name="never", kind="tcp", target="127.0.0.1:9")
    assert not isinstance(info.value, RetriesExhausted)
    assert delta(SQLITE_ALIAS, before) == NO_COUNTS


def test_the_policy_is_back_after_the_block_and_never_leaks_into_other_threads():
    seen = []
    with fail_fast():
        thread = threading.Thread(target=lambda: seen.append(policy_here(retry.DATABASE)))
        thread.start()
        thread.join(TIMEOUT)
        assert policy_here(retry.DATABASE) is retry.NONE
    assert seen == [retry.DATABASE]
    assert policy_here(retry.DATABASE) is retry.DATABASE


def test_the_middleware_fails_fast_for_a_sync_request():
    seen = []

    def view(request):
        seen.append(policy_here(retry.DATABASE))
        return HttpResponse()

    fail_fast_middleware(view)(RequestFactory().get("/"))
    assert seen == [retry.NONE]
    assert policy_here(retry.DATABASE) is retry.DATABASE


async def test_the_middleware_fails_fast_for_an_async_request():
    seen = []

    async def view(request):
        seen.append(policy_here(retry.DATABASE))
        return HttpResponse()

    await fail_fast_middleware(view)(RequestFactory().get("/"))
    assert seen == [retry.NONE]
    assert policy_here(retry.DATABASE) is retry.DATABASE
