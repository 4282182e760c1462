"""``manage.py sendalerts``: send the outbox's alerts until SIGINT or SIGTERM.

``runchecks`` and ``serve`` run it as their child process (``--with-parent``: it stops when its
standard input closes, so it never outlives them). Run it alone beside ``runchecks
--no-alerts`` to send alerts from elsewhere; any number of senders share the outbox safely
(docs/ALERTS.md). On a stop the sends in flight finish (each within ``ALERT_SEND_TIMEOUT``) and
are recorded. Exit 0 when stopped, 3 when the database has no tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from connections_app.alerts.models import Alert
from connections_app.alerts.process import run_sender_process
from connections_app.cli import EXIT_USAGE
from connections_app.errors import missing_tables_message
from connections_app.management.usage import UsageExitMixin


class Command(UsageExitMixin, BaseCommand):
    help = (
        "Send alerts from the outbox until SIGINT/SIGTERM (runchecks and serve run one "
        "themselves unless --no-alerts). Exit 0 when stopped, 3 when the database has no tables."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--with-parent",
            action="store_true",
            help="stop when standard input closes: how runchecks and serve run it, so that it "
            "never outlives them",
        )

    def handle(self, *args, **options) -> None:
        _refuse_missing_tables()
        asyncio.run(_send(options["with_parent"]))


async def _send(with_parent: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if with_parent:
        _stop_at_eof(stop)
    await run_sender_process(stop)


def _stop_at_eof(stop: asyncio.Event) -> None:
    """Set ``stop`` when standard input ends: the parent closed the pipe, or died with its end.
    A blocking read in a thread takes any kind of input (epoll refuses /dev/null and files)."""
    loop = asyncio.get_running_loop()

    def wait_for_eof() -> None:
        with contextlib.suppress(OSError):
            while os.read(0, 4096):  # the parent writes nothing; bounded by its end closing
                pass
        with contextlib.suppress(RuntimeError):  # the loop closed first: stopped already
            loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=wait_for_eof, name="parent-pipe", daemon=True).start()


def _refuse_missing_tables() -> None:
    """One line and exit 3 for a database never migrated; a database that is merely away is
    waited for (the sender reports each round it cannot claim)."""
    try:
        Alert.objects.exists()
    except DatabaseError as exc:
        missing = missing_tables_message(exc)
        if missing:
            raise CommandError(missing, returncode=EXIT_USAGE) from None
