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
        result = await asyncio.wait_for(probe(check, manager), timeout=check.timeout)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        error = exc
        if isinstance(exc, TimeoutError) and not str(exc):
            error = None  # our own deadline: the words below say all there is
            result = ProbeResult.failure(
                ErrorCategory.TIMEOUT, f"no answer within {check.timeout:g} s", clock.ms()
            )
        else:
            result = ProbeResult.from_exception(exc, latency_ms=clock.ms())
    if check.upside_down:
        result, error = upside_down(result), None
    if not result.ok:
        # Every failure reaches the error statistics, in the words the result carries; the
        # exception, when there was one, only adds its traceback where one helps.
        report(
            error or result.error_message,
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
