"""Redis probe: PING answered through a fresh connection.

The host is resolved through the manager's guard first; a redis:// URL is then connected by the
address the guard allowed (no second lookup to race). rediss:// keeps the name, which TLS
verifies (a name re-resolved to a refused address fails the certificate check there).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import redis.asyncio as aioredis

from connections_app.connection_manager import ConnectionManager
from connections_app.guard import BlockedAddress
from connections_app.probes.result import ProbeResult
from connections_app.probes.timing import Stopwatch


async def probe_redis(check, manager: ConnectionManager) -> ProbeResult:
    clock = Stopwatch()
    client = aioredis.from_url(
        await _guarded_url(check.target, manager),
        socket_connect_timeout=check.timeout,
        socket_timeout=check.timeout,
        retry_on_timeout=False,
    )
    try:
        await client.ping()
    finally:
        await client.aclose()
    return ProbeResult.success(clock.ms())


async def _guarded_url(target: str, manager: ConnectionManager) -> str:
    parts = urlsplit(target)
    if parts.scheme == "unix":
        raise BlockedAddress("a unix:// socket is local to this server: checks may not use it")
    port = parts.port or 6379
    address = (await manager.resolve(parts.hostname or "", port))[0]
    if parts.scheme != "redis":
        return target
    userinfo, at, _ = parts.netloc.rpartition("@")
    host = f"[{address}]" if ":" in address else address
    return parts._replace(netloc=f"{userinfo}{at}{host}:{port}").geturl()
