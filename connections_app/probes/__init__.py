"""One probe per check kind: an async function from a check to a ``ProbeResult``.

``run_probe`` is the only entry point: it bounds every probe by the check's timeout and turns
anything the target does into a failed result, so no target can crash or hang the runner.
"""

from __future__ import annotations

import asyncio

from connections_app import models
from connections_app.error_handler import report
from connections_app.errors import ErrorCategory
from connections_app.probes.channel_layer import probe_channel_layer
from connections_app.probes.database import probe_database
from connections_app.probes.dns import probe_dns
from connections_app.probes.http import probe_http
from connections_app.probes.postgres import probe_postgres
from connections_app.probes.redis import probe_redis
from connections_app.probes.result import ProbeResult
from connections_app.probes.tcp import probe_tcp
from connections_app.probes.timing import Stopwatch

__all__ = ["ProbeResult", "run_probe"]

PROBES = {
    models.KIND_HTTP: probe_http,
    models.KIND_TCP: probe_tcp,
    models.KIND_DATABASE: probe_database,
    models.KIND_REDIS: probe_redis,
    models.KIND_CHANNEL_LAYER: probe_channel_layer,
    models.KIND_DNS: probe_dns,
    models.KIND_POSTGRES: probe_postgres,
}


async def run_probe(check: models.HealthCheck, manager) -> ProbeResult:
    probe = PROBES.get(check.kind)
    if probe is None:
        return ProbeResult.failure(ErrorCategory.UNKNOWN, f"unknown check kind {check.kind!r}")
    clock = Stopwatch()
    error: BaseException | None = None
    try:
        # A deadline around the probe, not ``wait_for``: that runs the probe in a task of its
        # own, one more task per result.
        async with asyncio.timeout(check.timeout):
            result = await probe(check, manager)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error = exc
        result = ProbeResult.from_exception(exc, latency_ms=clock.ms())
        if result.error_category == ErrorCategory.TIMEOUT:
            # Our deadline or the client's (aiohttp's, redis-py's: both are the check's
            # timeout): one wording in the result, the admin and the log.
            result = ProbeResult.failure(
                ErrorCategory.TIMEOUT, f"no answer within {check.timeout:g} s", clock.ms()
            )
    if check.upside_down:
        result = upside_down(result)
    if not result.ok:
        # Every failure reaches the error statistics, in the words the result carries; the
        # exception only where its traceback helps: a failure nothing could name.
        unnamed = error is not None and result.error_category == ErrorCategory.UNKNOWN
        report(
            error if unnamed else result.error_message,
            f"check.{check.kind}",
            check.name,
            category=result.error_category,
        )
    return result


def upside_down(result: ProbeResult) -> ProbeResult:
    """The verdict of a check that passes when its target fails (a port that must stay closed,
    a host that must not answer)."""
    if not result.ok:
        return ProbeResult.success(result.latency_ms or 0.0)
    answer = f" (HTTP {result.http_status})" if result.http_status else ""
    return ProbeResult.failure(
        ErrorCategory.ANSWERED,
        f"the target answered{answer}, and this check passes only when it does not",
        result.latency_ms,
        http_status=result.http_status,
    )
