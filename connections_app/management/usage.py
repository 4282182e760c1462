"""Usage errors exit with 3, as the README promises, instead of argparse's 2.

Exit 2 means "some check down" for ``runchecks --once``; a mistyped option must not look like
that to a script. Every command of this app mixes ``UsageExitMixin`` in before ``BaseCommand``:

    class Command(UsageExitMixin, BaseCommand): ...

Parsing errors (unknown option, bad choice, bad number) then print argparse's usage and message
on stderr and exit ``EXIT_USAGE``; called through ``call_command`` they raise ``CommandError``
with that return code.
"""

from __future__ import annotations

import argparse
import sys

from django.core.management.base import CommandError, CommandParser

from connections_app.cli import EXIT_USAGE


class UsageParser(CommandParser):
    """Django's parser, with ``EXIT_USAGE`` as the exit code of a usage error."""

    def error(self, message: str):
        if self.called_from_command_line:
            self.print_usage(sys.stderr)
            self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")
        raise CommandError(f"Error: {message}", returncode=EXIT_USAGE)


class UsageExitMixin:
    """Put before ``BaseCommand``: its parser reports usage errors with ``EXIT_USAGE``."""

    def create_parser(self, prog_name: str, subcommand: str, **kwargs) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # BaseCommand.create_parser builds a CommandParser and offers no way to choose the
        # class; UsageParser adds no state, only overrides error(), so switching is safe.
        parser.__class__ = UsageParser
        return parser


def positive_int(text: str) -> int:
    """An argparse ``type``: an integer of 1 or more (anything else is a usage error)."""
    return _whole_number(text, "a whole number", 1, None, "must be 1 or more")


def port_number(text: str) -> int:
    """An argparse ``type``: a TCP port, 1 to 65535."""
    return _whole_number(text, "a port number", 1, 65535, "must be 1 to 65535")


def _whole_number(text: str, what: str, low: int, high: int | None, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"{rule}, got {value}")
    return value


def add_concurrency_argument(parser: argparse.ArgumentParser) -> None:
    """``--concurrency N``, the same for ``serve`` and ``runchecks`` (both run checks)."""
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=None,
        metavar="N",
        help="checks running at once in all (default: half the limit of open files, 20 to 2000; "
        "PROBES_PER_TARGET of them per host and port)",
    )
