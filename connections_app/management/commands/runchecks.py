"""``manage.py runchecks``: run health checks once (for scripts) or until stopped.

``--once`` exit codes: 0 all up, 1 some degraded, 2 some down, 3 usage or configuration error
(bad option, unknown check, database unusable, results not stored). SIGINT or SIGTERM during
``--once`` skips the checks still waiting for their turn, lets the running ones finish (each
is bounded by its timeout, and all by ``STOP_TIMEOUT``), stores every result and exits 0 with no
report; a second signal, or ``STOP_TIMEOUT`` seconds after the first, abandons (cancels) the
running ones, stores what finished and exits 130 (SIGINT) or 143 (SIGTERM). stderr says when
the first signal arrives, and at the end how many results were stored and how many checks were
cancelled; results that could not be stored make the exit code 3 in every case.

A check named with ``--check`` runs even when it is paused (disabled), and is judged as if it
were enabled: its report row and the exit code carry the status its results give it.

Without ``--once`` it runs every enabled check (with ``--tag``, every enabled check with one of
those tags) at its own interval, and the alert sender as a child process (``alerts.process``;
not with ``--no-alerts``); SIGINT or SIGTERM lets the
running checks finish for at most ``STOP_TIMEOUT`` seconds (default 10), cancels the rest (stderr
says how many), stores every result that finished and exits 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from connections_app.alerts.process import supervise
from connections_app.cli import EXIT_SIGINT, EXIT_SIGTERM, EXIT_USAGE, counted
from connections_app.errors import missing_tables_message
from connections_app.gc_tuning import settle_long_lived
from connections_app.management.usage import UsageExitMixin, add_concurrency_argument
from connections_app.models import PAUSED, HealthCheck
from connections_app.monitor import Monitor, Outcome
from connections_app.probe_slots import runner_manager
from connections_app.push import with_quiet_push_checks
from connections_app.redaction import redact
from connections_app.runchecks_output import exit_code, render_json, render_table
from connections_app.summary import history_figures

#: --verbosity 0 logs only problems; 2 and 3 add a line per stored batch and per retry.
VERBOSITY_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}


class UsageError(CommandError):
    """The command line asks for something that cannot be done (exit 3)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, returncode=EXIT_USAGE)


class DatabaseUnavailable(CommandError):
    """The checks cannot be read or their results stored: a configuration error (exit 3)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"database unavailable: {message}", returncode=EXIT_USAGE)


class Command(UsageExitMixin, BaseCommand):
    help = (
        "Run health checks. With --once: each selected check once, then exit 0 (all up), "
        "1 (some degraded), 2 (some down) or 3 (usage or configuration error); SIGINT or "
        "SIGTERM lets the running checks finish, stores their results and exits 0 with no "
        "report; a second one, or STOP_TIMEOUT seconds (default 10), abandons them (exit 130 "
        "or 143). Without --once: run every enabled check at its own interval until "
        "SIGINT/SIGTERM, which let running checks finish for at most STOP_TIMEOUT seconds, "
        "cancel the rest (stderr says how many) and exit 0."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="run each check once and exit")
        parser.add_argument(
            "--check",
            action="append",
            default=[],
            metavar="NAME",
            help="only this check (repeatable); a paused (disabled) check named here runs "
            "too, and is judged as if it were enabled",
        )
        parser.add_argument(
            "--tag",
            action="append",
            default=[],
            help="only enabled checks with this tag (repeatable); without --once, this "
            "runner claims only such checks, so runners can be split by tag",
        )
        parser.add_argument(
            "--format",
            choices=["table", "json"],
            default="table",
            help="report for people or one JSON document for scripts (default: %(default)s)",
        )
        parser.add_argument(
            "--no-alerts",
            action="store_true",
            help="send no alerts from here (they wait in the outbox): run manage.py "
            "sendalerts elsewhere; by default a sender process runs beside the checks",
        )
        add_concurrency_argument(parser)

    def handle(self, *args, **options) -> None:
        logging.getLogger("connections_app").setLevel(VERBOSITY_LEVELS[options["verbosity"]])
        try:
            self._run(options)
        except DatabaseError as exc:
            missing = missing_tables_message(exc)
            if missing:
                raise CommandError(missing, returncode=EXIT_USAGE) from None
            raise DatabaseUnavailable(redact(str(exc)).strip()) from None

    def _run(self, options: dict) -> None:
        if options["once"]:
            code = asyncio.run(self._once(options))
            sys.stdout.flush()
            if code:
                sys.exit(code)
            return
        used = {"--check": options["check"], "--format": options["format"] != "table"}
        given = [name for name, on in used.items() if on]
        if given:
            raise UsageError(
                f"{' and '.join(given)} {'go' if len(given) > 1 else 'goes'} with --once"
            )
        _refuse_missing_tables()
        settle_long_lived()
        asyncio.run(self._forever(options))

    async def _once(self, options: dict) -> int:
        stop = _stop_on_signals(abandonable=True)
        checks = await sync_to_async(select_checks)(options["check"], options["tag"])
        total, manager = runner_manager(options["concurrency"])
        async with manager:
            monitor = Monitor(manager, concurrency=total)
            outcomes = await monitor.run_once(checks, stop, stop.abandoned)
        unstored = monitor.writer.pending + monitor.writer.dropped
        if unstored:
            self.stderr.write(f"could not store {counted(unstored, 'result')} (see the log above)")
        if stop.signal is not None:
            stored = monitor.writer.written
            how = "interrupted" if stop.abandoned.is_set() else "stopped"
            cancelled = f", {monitor.cancelled} cancelled" if monitor.cancelled else ""
            self.stderr.write(
                f"runchecks: {how} by {stop.signal.name}; "
                f"{counted(stored, 'result')} stored{cancelled}"
            )
        if unstored:
            return EXIT_USAGE  # lost results outrank everything: a script must not read "up"
        if stop.abandoned.is_set():
            return EXIT_SIGINT if stop.signal == signal.SIGINT else EXIT_SIGTERM
        if stop.signal is not None:
            return 0  # as documented: the running checks finished and every result is stored
        outcomes = await sync_to_async(with_quiet_push_checks)(checks, outcomes)
        judge_as_enabled(outcomes)
        if options["format"] == "json":
            figures = await sync_to_async(history_figures)([o.check.pk for o in outcomes])
            self.stdout.write(render_json(outcomes, figures))
        else:
            self.stdout.write(render_table(outcomes))
        return exit_code(outcomes)

    async def _forever(self, options: dict) -> None:
        stop = _stop_on_signals()
        if options["verbosity"] >= 1:
            self.stderr.write("runchecks: running until SIGINT or SIGTERM")
        total, manager = runner_manager(options["concurrency"])
        async with manager:
            alerts = None if options["no_alerts"] else supervise
            monitor = Monitor(manager, concurrency=total, tags=options["tag"], alerts=alerts)
            await monitor.run_forever(stop, stop_timeout=settings.STOP_TIMEOUT)
        if monitor.cancelled:
            # Always said: these checks have no result for this round, and a supervisor's
            # log is where anyone would look.
            self.stderr.write(
                f"runchecks: {counted(monitor.cancelled, 'running check')} cancelled after "
                f"STOP_TIMEOUT ({settings.STOP_TIMEOUT:g} s)"
            )
        if options["verbosity"] >= 1:
            self.stderr.write(f"runchecks: stopped after storing {monitor.writer.written} results")


def _refuse_missing_tables() -> None:
    """Raise the database's error when it has no tables: the loop would otherwise report a
    failed claim every second forever. A database that is merely away is waited for."""
    try:
        HealthCheck.objects.exists()
    except DatabaseError as exc:
        if missing_tables_message(exc):
            raise


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


def judge_as_enabled(outcomes: list[Outcome]) -> None:
    """Give each outcome of a paused check the status it would have if enabled (named with
    --check, it ran: its results decide, not the switch that keeps the runner off it)."""
    for outcome in outcomes:
        if outcome.status == PAUSED:
            outcome.status = outcome.health


class SignalStop(asyncio.Event):
    """Set by the first SIGINT or SIGTERM (``signal`` says which). With ``abandonable``, a
    second one sets ``abandoned``: stop waiting for the running checks."""

    def __init__(self, abandonable: bool) -> None:
        super().__init__()
        self.signal: signal.Signals | None = None
        self.abandoned = asyncio.Event()
        self._abandonable = abandonable

    def received(self, sig: signal.Signals) -> None:
        if self.signal is not None:
            if self._abandonable:
                self.abandoned.set()
            return
        self.signal = sig
        self.set()
        if self._abandonable:
            # A supervisor kills after its own grace period (Docker: 10 s): abandon in time to
            # store what finished.
            timeout = settings.STOP_TIMEOUT
            asyncio.get_running_loop().call_later(timeout, self.abandoned.set)
            sys.stderr.write(
                f"runchecks: {sig.name}: letting the running checks finish (at most "
                f"{timeout:g} s, STOP_TIMEOUT); send it again to abandon them\n"
            )
            sys.stderr.flush()


def _stop_on_signals(abandonable: bool = False) -> SignalStop:
    """An event set by SIGINT or SIGTERM: running work ends cleanly instead of a traceback."""
    stop = SignalStop(abandonable)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.received, sig)
    return stop
