"""Redis probe: PING answered through a fresh connection."""

from __future__ import annotations

import redis.asyncio as aioredis

from connections_app.probes.result import ProbeResult
from connections_app.probes.timing import Stopwatch


async def probe_redis(check, manager=None) -> ProbeResult:
    clock = Stopwatch()
    client = aioredis.from_url(
        check.target,
        socket_connect_timeout=check.timeout,
        socket_timeout=check.timeout,
        retry_on_timeout=False,
    )
    try:
        await client.ping()
    finally:
        await client.aclose()
    return ProbeResult.success(clock.ms())
