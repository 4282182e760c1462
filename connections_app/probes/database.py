"""Database probe: the health-check query of a Django database alias, timed."""

from __future__ import annotations

from asgiref.sync import sync_to_async

from connections_app.db.health import check_database
from connections_app.probes.result import ProbeResult


async def probe_database(check, manager=None) -> ProbeResult:
    latency = await sync_to_async(check_database, thread_sensitive=True)(check.target)
    return ProbeResult.success(latency)
