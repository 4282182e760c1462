"""Certificate expiry on every https check: days left recorded, DEGRADED under
``tls_warn_days`` (category ``tls_expiring``), DOWN when expired (``tls``).

Each server's certificate is made in the test (``HttpTarget(tls=True, cert_days=...)``); the
client trusts it through the ConnectionManager's SSL context, as the runner trusts the system's.
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from connections_app.connection_manager import ConnectionManager
from connections_app.models import DEGRADED, DOWN, UP, HealthCheck, StateChange
from connections_app.probes import run_probe
from connections_app.results import Outcome, store_outcomes
from tests.http_targets import HttpTarget

pytestmark = pytest.mark.django_db(transaction=True)


async def probe_and_store(target: HttpTarget, **fields) -> tuple[HealthCheck, object]:
    values = {"name": "tls", "target": target.url("/ok"), "timeout": 2, "interval": 10}
    check = await HealthCheck.objects.acreate(**(values | fields))
    trusted = target.client_ssl_context() if target.tls else None
    async with ConnectionManager(ssl_context=trusted) as manager:
        result = await run_probe(check, manager)
    await sync_to_async(store_outcomes)([Outcome(check, result)])
    await check.arefresh_from_db()
    return check, result


async def test_a_certificate_expiring_in_5_days_makes_the_check_degraded():
    with HttpTarget(tls=True, cert_days=5.5) as target:
        check, result = await probe_and_store(target)
    assert (result.ok, result.error_category, result.tls_days_left) == (True, "tls_expiring", 5)
    assert result.error_message == "the TLS certificate expires in 5 days"
    assert (check.status, check.tls_days_left, check.last_error_category) == (
        DEGRADED,
        5,
        "tls_expiring",
    )
    change = await StateChange.objects.aget(health_check=check)
    assert (change.to_status, change.reason_category) == (DEGRADED, "tls_expiring")
    stored = await check.results.aget()
    assert (stored.ok, stored.tls_days_left) == (True, 5)


async def test_a_certificate_with_time_left_is_up_with_its_days_recorded():
    with HttpTarget(tls=True, cert_days=30.5) as target:
        check, result = await probe_and_store(target)
    assert (result.ok, result.error_category, result.tls_days_left) == (True, "", 30)
    assert (check.status, check.tls_days_left) == (UP, 30)


async def test_no_warning_when_tls_warn_days_is_0():
    with HttpTarget(tls=True, cert_days=1.5) as target:
        check, result = await probe_and_store(target, tls_warn_days=0)
    assert (check.status, check.tls_days_left, result.error_category) == (UP, 1, "")


async def test_an_expired_certificate_is_down_with_category_tls():
    with HttpTarget(tls=True, cert_days=-2) as target:
        check, result = await probe_and_store(target, failures_before_down=1)
    assert (result.ok, result.error_category) == (False, "tls")
    assert "expired" in result.error_message
    assert check.status == DOWN


async def test_plain_http_records_no_days(http_target):
    check, result = await probe_and_store(http_target)
    assert (check.status, check.tls_days_left, result.tls_days_left) == (UP, None, None)
