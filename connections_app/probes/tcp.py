"""TCP probe: a connection to host:port opens (and is closed at once)."""

from __future__ import annotations

import asyncio

from connections_app.probes.result import ProbeResult
from connections_app.probes.timing import Stopwatch


def split_host_port(target: str) -> tuple[str, int]:
    host, _, port = target.strip().rpartition(":")
    return host.strip("[]"), int(port)


async def probe_tcp(check, manager=None) -> ProbeResult:
    host, port = split_host_port(check.target)
    clock = Stopwatch()
    _reader, writer = await asyncio.open_connection(host, port)
    latency = clock.ms()
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # the peer may reset on close; the connection itself did open
    return ProbeResult.success(latency)
