"""What every command says to scripts and people: exit codes, and counts in words that agree."""

from __future__ import annotations

#: ``runchecks --once``: all up, some degraded, some down.
EXIT_UP = 0
EXIT_DEGRADED = 1
EXIT_DOWN = 2
#: A usage or configuration error of any command: never 2, which means "some down".
EXIT_USAGE = 3
#: ``runchecks --once`` abandoned by a second signal: 128 + its number, as shells report it.
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


def counted(count: int, noun: str) -> str:
    """``1 check``, ``2 checks``: the messages people read count in words that agree."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
