"""``manage.py runchecks``: run health checks once (for scripts) or until stopped."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from connections_app.checks_report import EXIT_USAGE, exit_code, render_json, render_table
from connections_app.connection_manager import ConnectionManager
from connections_app.models import HealthCheck
from connections_app.monitor import Monitor
from connections_app.redaction import redact

#: --verbosity 0 logs only problems; 2 and 3 add a line per stored batch and per retry.
VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


class UsageError(CommandError):
    def __init__(self, message: str) -> None:
        super().__init__(message, returncode=EXIT_USAGE)


class Command(BaseCommand):
    help = (
        "Run health checks. With --once: each selected check once, then exit 0 (all up), "
        "1 (some degraded), 2 (some down) or 3 (usage or configuration error). "
        "Without: run every enabled check at its own interval until SIGINT/SIGTERM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run each check once and exit")
        parser.add_argument(
            "--check", action="append", default=[], metavar="NAME", help="only this check"
        )
        parser.add_argument("--tag", action="append", default=[], help="only checks with a tag")
        parser.add_argument("--format", choices=["table", "json"], default="table")
        parser.add_argument(
            "--concurrency", type=int, default=20, help="checks running at once (default 20)"
        )

    def handle(self, *args, **options) -> None:
        if options["concurrency"] < 1:
            raise UsageError("--concurrency must be 1 or more")
        logging.getLogger("connections_app").setLevel(VERBOSITY_LEVELS[options["verbosity"]])
        try:
            self._run(options)
        except DatabaseError as exc:
            raise UsageError(f"database unavailable: {redact(str(exc)).strip()}") from None

    def _run(self, options: dict) -> None:
        if options["once"]:
            code = asyncio.run(self._once(options))
            sys.stdout.flush()
            if code:
                sys.exit(code)
            return
        if options["check"] or options["tag"] or options["format"] != "table":
            raise UsageError("--check, --tag and --format go with --once")
        asyncio.run(self._forever(options))

    async def _once(self, options: dict) -> int:
        checks = await sync_to_async(select_checks)(options["check"], options["tag"])
        stop = _stop_on_signals()
        async with ConnectionManager() as manager:
            monitor = Monitor(manager, concurrency=options["concurrency"])
            outcomes = await monitor.run_once(checks, stop)
        unstored = monitor.writer.pending + monitor.writer.dropped
        if unstored:
            self.stderr.write(f"could not store {unstored} results (see the log above)")
            return EXIT_USAGE
        if stop.is_set():
            return 0
        render = render_json if options["format"] == "json" else render_table
        self.stdout.write(render(outcomes))
        return exit_code(outcomes)

    async def _forever(self, options: dict) -> None:
        stop = _stop_on_signals()
        if options["verbosity"] >= 1:
            self.stderr.write("runchecks: running until SIGINT or SIGTERM")
        async with ConnectionManager() as manager:
            monitor = Monitor(manager, concurrency=options["concurrency"])
            await monitor.run_forever(stop)
        if options["verbosity"] >= 1:
            self.stderr.write(f"runchecks: stopped after storing {monitor.writer.written} results")


def select_checks(names: list[str], tags: list[str]) -> list[HealthCheck]:
    """Checks named with --check (enabled or not) plus enabled checks with any --tag;
    every enabled check when neither is given."""
    queryset = HealthCheck.objects.all()
    if not names and not tags:
        return list(queryset.filter(enabled=True))
    found = {c.name: c for c in queryset.filter(name__in=names)}
    missing = sorted(set(names) - set(found))
    if missing:
        raise UsageError(f"--check: no check named {', '.join(map(repr, missing))}")
    for tag in tags:
        found.update({c.name: c for c in queryset.filter(enabled=True).with_tag(tag)})
    if not found:
        raise UsageError(f"--tag: no enabled check has the tag {', '.join(map(repr, tags))}")
    return sorted(found.values(), key=lambda c: c.name)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM: running work ends cleanly instead of a traceback."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop
