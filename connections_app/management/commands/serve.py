"""``manage.py serve``: the web server (admin, dashboard, /health/, WebSocket) and, unless
``--no-checks``, the check runner in the same process.

The embedded default needs both in one process: the in-memory channel layer cannot carry events
between processes. With Redis, run ``daphne project.asgi:application`` and ``runchecks`` apart.

Exit codes: 0 stopped by SIGINT/SIGTERM, 1 cannot listen (address in use, not allowed), 3 usage
error (bad option or value).
"""

from __future__ import annotations

# daphne.server installs Twisted's asyncio reactor on import (daphne_server imports it): it
# must come before any other Twisted import.
from connections_app.daphne_server import IdleTimeoutServer  # isort:skip

import asyncio
import logging

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError
from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.python.failure import Failure

from connections_app.access_log import access_logger
from connections_app.alerts.process import supervise
from connections_app.db.fail_fast import fail_fast
from connections_app.management.usage import (
    UsageExitMixin,
    add_concurrency_argument,
    port_number,
    positive_int,
)
from connections_app.monitor import Monitor
from connections_app.probe_slots import runner_manager

#: The address is taken or not ours to take: the server cannot start, the command line was fine.
EXIT_CANNOT_LISTEN = 1
#: Connections the kernel completes and queues before the server accepts them (capped by
#: ``net.core.somaxconn``, 4096 on current kernels).
LISTEN_BACKLOG = 1024

logger = logging.getLogger(__name__)


class Command(UsageExitMixin, BaseCommand):
    help = (
        "Serve HTTP and WebSocket with daphne, and run the health checks in the same process. "
        "Exit 0 when stopped by SIGINT/SIGTERM, 1 when the address cannot be listened on, "
        "3 on a usage error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to listen on; 0.0.0.0 or :: for every interface (default: %(default)s)",
        )
        parser.add_argument(
            "--port",
            type=port_number,
            default=8000,
            help="TCP port to listen on (default: %(default)s)",
        )
        parser.add_argument(
            "--no-checks", action="store_true", help="serve only; run the checks elsewhere"
        )
        parser.add_argument(
            "--idle-timeout",
            type=positive_int,
            default=None,
            metavar="SECONDS",
            help="close a connection that sends nothing for this long while no request is in "
            "progress: an incomplete request, or keep-alive between requests "
            f"(default: IDLE_TIMEOUT, {settings.IDLE_TIMEOUT})",
        )
        add_concurrency_argument(parser)

    def handle(self, *args, **options) -> None:
        # Importing it raises the soft nofile limit (project/asgi.py), before the server listens.
        from project.asgi import application

        # Asked here, not in the banner: that runs inside the server's event loop.
        options["needs_staff"] = _no_staff_user()
        server = _Server(
            application=application,
            endpoints=[_endpoint(options)],
            signal_handlers=True,
            verbosity=options["verbosity"],
            # Each request as one log line, redacted like every other (as daphne's -v 1).
            action_logger=access_logger() if options["verbosity"] >= 1 else None,
            ready_callable=lambda: self._print_banner(options),
        )
        server.idle_timeout = options["idle_timeout"]
        if not options["no_checks"]:
            _run_checks_alongside(options["concurrency"])
        server.run()
        if server.listen_failure is not None:
            raise CommandError(
                f"cannot listen on {_address(options)}: {_reason(server.listen_failure)}",
                returncode=EXIT_CANNOT_LISTEN,
            )

    def _print_banner(self, options: dict) -> None:
        everywhere = options["host"] in ("0.0.0.0", "::")
        # A browser cannot open http://0.0.0.0/: show the local address, and say what the
        # other machines need.
        shown = dict(options, host="127.0.0.1") if everywhere else options
        base = f"http://{_address(shown)}"
        self.stdout.write(
            f"Connection Health on {base}/dashboard/  (admin: {base}/admin/, "
            f"JSON: {base}/health/)\n"
            + (
                "Listening on every address: add the names other machines use to "
                "ALLOWED_HOSTS in .env (Django answers 400 to any other Host).\n"
                if everywhere
                else ""
            )
            + (
                "Create a staff user with: .venv/bin/python manage.py createsuperuser\n"
                if options["needs_staff"]
                else ""
            )
            + "Stop with Ctrl-C."
        )
        self.stdout.flush()


def _no_staff_user() -> bool:
    """Whether nobody can log in to the admin yet (unknown, e.g. no tables: say it anyway)."""
    from django.contrib.auth import get_user_model

    try:
        # A hint must not delay the start: one connect attempt, never the runner's back-off.
        with fail_fast():
            return not get_user_model().objects.filter(is_staff=True, is_active=True).exists()
    except DatabaseError:
        return True


class _Server(IdleTimeoutServer):
    """daphne's server with the idle timeout, keeping a listen failure for the command to
    report in one line."""

    listen_failure: Failure | None = None

    def listen_error(self, failure: Failure) -> None:
        # daphne logs CRITICAL and stops with nothing to tell the command; an exit code is
        # what a script or a supervisor needs, and the command writes the one line.
        self.listen_failure = failure
        self.stop()


def _address(options: dict) -> str:
    host = options["host"] if ":" not in options["host"] else f"[{options['host']}]"
    return f"{host}:{options['port']}"


def _reason(failure: Failure) -> str:
    """The operating system's reason ("Address already in use"), without Twisted's wrapping
    ("Couldn't listen on ...: [Errno 98] ...") that would repeat the address."""
    error = failure.value
    if isinstance(error, CannotListenError) and isinstance(error.socketError, OSError):
        return error.socketError.strerror or str(error.socketError)
    return failure.getErrorMessage()


def _endpoint(options: dict) -> str:
    """daphne's endpoint description, with a listen queue long enough for a burst of connects
    (Twisted's default of 50 drops the SYNs of the 51st on, each then waits a second)."""
    return (
        f"tcp:port={options['port']}:interface={_twisted_host(options['host'])}"
        f":backlog={LISTEN_BACKLOG}"
    )


def _twisted_host(host: str) -> str:
    return host.replace(":", r"\:")


def _run_checks_alongside(concurrency: int | None) -> None:
    """Start the monitor when the reactor runs; at shutdown, let it drain and flush first."""
    stop = asyncio.Event()
    state: dict[str, asyncio.Task] = {}

    async def monitor_main() -> None:
        total, manager = runner_manager(concurrency)
        async with manager:
            await Monitor(manager, concurrency=total, alerts=supervise).run_forever(stop)

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
