"""Run checks at once, outside the request that asked (the admin's "Run selected checks now").

A check may take up to its timeout (300 s at most): the page must not wait for it. Each run is
a thread of its own that outlives the request and stores its results as the runner does
(``Monitor.run_once``: one batch, state and events included).
"""

from __future__ import annotations

import asyncio
import threading

from django.db import connections

from connections_app.error_handler import report
from connections_app.models import HealthCheck

_runs: set[threading.Thread] = set()
_lock = threading.Lock()


def run_in_background(checks: list[HealthCheck]) -> threading.Thread:
    """Start running ``checks`` once in a thread of their own; the thread, already started."""
    thread = threading.Thread(target=_run, args=(checks,), name="run-now", daemon=True)
    with _lock:
        _runs.add(thread)
    thread.start()
    return thread


def running() -> list[threading.Thread]:
    """The runs not finished yet (tests join them; a server need not)."""
    with _lock:
        return [thread for thread in _runs if thread.is_alive()]


def _run(checks: list[HealthCheck]) -> None:
    try:
        asyncio.run(_run_once(checks))
    except Exception as exc:  # a thread's exception would only reach stderr
        report(exc, "admin.run_now", ", ".join(c.name for c in checks)[:200])
    finally:
        connections.close_all()  # this thread's own connections, if any
        with _lock:
            _runs.discard(threading.current_thread())


async def _run_once(checks: list[HealthCheck]) -> None:
    # Imported here: the runner pulls in aiohttp and the probes, which the admin needs only
    # when this action is used.
    from connections_app.connection_manager import ConnectionManager
    from connections_app.monitor import Monitor

    async with ConnectionManager() as manager:
        await Monitor(manager).run_once(checks, asyncio.Event())
