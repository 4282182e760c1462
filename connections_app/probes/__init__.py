"""One probe per check kind: an async function from a check to a ``ProbeResult``.

``run_probe`` is the only entry point: it bounds every probe by the check's timeout and turns
anything the target does into a failed result, so no target can crash or hang the runner.
"""

from __future__ import annotations

import asyncio

from connections_app import models
from connections_app.error_handler import ErrorContext, get_global_error_handler
from connections_app.errors import ErrorCategory
from connections_app.probes.channel_layer import probe_channel_layer
from connections_app.probes.database import probe_database
from connections_app.probes.http import probe_http
from connections_app.probes.redis import probe_redis
from connections_app.probes.result import CheckFailed, ProbeResult
from connections_app.probes.tcp import probe_tcp
from connections_app.probes.timing import Stopwatch

__all__ = ["ProbeResult", "run_probe"]

PROBES = {
    models.KIND_HTTP: probe_http,
    models.KIND_TCP: probe_tcp,
    models.KIND_DATABASE: probe_database,
    models.KIND_REDIS: probe_redis,
    models.KIND_CHANNEL_LAYER: probe_channel_layer,
}


async def run_probe(check: models.HealthCheck, manager) -> ProbeResult:
    probe = PROBES.get(check.kind)
    if probe is None:
        return ProbeResult.failure(ErrorCategory.UNKNOWN, f"unknown check kind {check.kind!r}")
    clock = Stopwatch()
    try:
        result = await asyncio.wait_for(probe(check, manager), timeout=check.timeout)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        _count(check, exc)
        if isinstance(exc, TimeoutError) and not str(exc):
            return ProbeResult.failure(
                ErrorCategory.TIMEOUT, f"no answer within {check.timeout:g} s", clock.ms()
            )
        return ProbeResult.from_exception(exc, latency_ms=clock.ms())
    if not result.ok:
        _count(check, CheckFailed(result.error_message, result.http_status))
    return result


def _count(check: models.HealthCheck, exc: BaseException) -> None:
    """Every failure reaches the error statistics; the log gets one line per window."""
    context = ErrorContext(operation=f"check.{check.kind}", endpoint=check.name)
    get_global_error_handler().handle_error(exc, context)
