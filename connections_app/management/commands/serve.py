"""``manage.py serve``: the web server (admin, dashboard, /health/, WebSocket) and, unless
``--no-checks``, the check runner in the same process.

The embedded default needs both in one process: the in-memory channel layer cannot carry events
between processes. With Redis, run ``daphne project.asgi:application`` and ``runchecks`` apart.
"""

from __future__ import annotations

# daphne.server installs Twisted's asyncio reactor on import: it must come before any other
# Twisted import.
import daphne.server  # isort:skip

import asyncio
import logging

from django.core.management.base import BaseCommand, CommandParser
from twisted.internet import defer, reactor

from connections_app.connection_manager import ConnectionManager
from connections_app.monitor import Monitor

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Serve HTTP and WebSocket with daphne, and run the health checks in the same process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-checks", action="store_true", help="serve only")
        parser.add_argument("--concurrency", type=int, default=20)

    def handle(self, *args, **options) -> None:
        from project.asgi import application

        server = daphne.server.Server(
            application=application,
            endpoints=[f"tcp:port={options['port']}:interface={_twisted_host(options['host'])}"],
            signal_handlers=True,
            verbosity=options["verbosity"],
            ready_callable=lambda: self._announce(options),
        )
        if not options["no_checks"]:
            _run_checks_alongside(options["concurrency"])
        server.run()

    def _announce(self, options: dict) -> None:
        host = options["host"] if ":" not in options["host"] else f"[{options['host']}]"
        base = f"http://{host}:{options['port']}"
        self.stdout.write(
            f"Connection Health on {base}/dashboard/  (admin: {base}/admin/, "
            f"JSON: {base}/health/)\n"
            "Create a staff user with: .venv/bin/python manage.py createsuperuser\n"
            "Stop with Ctrl-C."
        )
        self.stdout.flush()


def _twisted_host(host: str) -> str:
    return host.replace(":", r"\:")


def _run_checks_alongside(concurrency: int) -> None:
    """Start the monitor when the reactor runs; at shutdown, let it drain and flush first."""
    stop = asyncio.Event()
    state: dict[str, asyncio.Task] = {}

    async def monitor_main() -> None:
        async with ConnectionManager() as manager:
            await Monitor(manager, concurrency=concurrency).run_forever(stop)

    def start() -> None:
        state["task"] = asyncio.ensure_future(monitor_main())

    def shutdown() -> defer.Deferred | None:
        task = state.get("task")
        if task is None or task.done():
            return None
        stop.set()
        return defer.Deferred.fromFuture(task)

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", shutdown)
