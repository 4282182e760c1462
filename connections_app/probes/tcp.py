"""TCP probe: a connection to host:port opens (and is closed at once).

The name is resolved through the manager's guard and the socket made by the manager, so a
refused address never gets a socket (``guard.py``).
"""

from __future__ import annotations

import asyncio
import socket

from connections_app.connection_manager import ConnectionManager
from connections_app.probes.result import ProbeResult
from connections_app.probes.timing import Stopwatch


def split_host_port(target: str) -> tuple[str, int]:
    host, _, port = target.strip().rpartition(":")
    return host.strip("[]"), int(port)


async def probe_tcp(check, manager: ConnectionManager) -> ProbeResult:
    host, port = split_host_port(check.target)
    clock = Stopwatch()
    addresses = await manager.resolve(host, port)
    error: OSError = socket.gaierror(socket.EAI_NONAME, f"no address for {host}")
    for address in addresses:  # as many as the resolver gave: like open_connection, in order
        try:
            await _connect(manager, address, port)
        except OSError as exc:
            error = exc
            continue
        return ProbeResult.success(clock.ms())
    raise error


async def _connect(manager: ConnectionManager, address: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = manager.open_socket((family, socket.SOCK_STREAM, 0, "", (address, port)))
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
    finally:
        sock.close()
