"""PostgreSQL probe: a ``postgres://`` DSN outside our Django aliases answers ``SELECT 1``.

The host is resolved through the manager's guard and libpq is given the allowed address
(``hostaddr``), so it makes no second lookup that could land elsewhere; the name stays for TLS.
The DSN's password is a secret: messages pass through ``redact`` (``ProbeResult.failure``).
"""

from __future__ import annotations

import math
from urllib.parse import urlsplit

import psycopg

from connections_app.connection_manager import ConnectionManager
from connections_app.probes.result import ProbeResult
from connections_app.probes.timing import Stopwatch

DEFAULT_PORT = 5432
#: libpq counts whole seconds and treats anything below 2 as 2.
MIN_CONNECT_TIMEOUT = 2


async def probe_postgres(check, manager: ConnectionManager) -> ProbeResult:
    parts = urlsplit(check.target)
    port = parts.port or DEFAULT_PORT
    address = (await manager.resolve(parts.hostname or "", port))[0]
    clock = Stopwatch()
    connection = await psycopg.AsyncConnection.connect(
        check.target,
        hostaddr=address,
        connect_timeout=max(MIN_CONNECT_TIMEOUT, math.ceil(check.timeout)),
        autocommit=True,
    )
    try:
        await connection.execute("SELECT 1")
    finally:
        await connection.close()
    return ProbeResult.success(clock.ms())
