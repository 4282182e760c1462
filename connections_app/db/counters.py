"""Retries and reconnects: counted per alias since start, reported through the error handler.

The handler logs the first occurrence in a window and counts the repeats, so a database that
keeps failing costs one log line per window, not one per statement.
"""

from __future__ import annotations

import threading
from collections import Counter

from connections_app.error_handler import report

RETRY = "retries"
RECONNECT = "reconnects"

_lock = threading.Lock()
_counts: Counter[tuple[str, str]] = Counter()


def record_retry(alias: str, exc: BaseException) -> None:
    """A statement or a connection attempt failed and will be tried again."""
    _record(alias, RETRY, exc, "db.retry")


def record_reconnect(alias: str, exc: BaseException) -> None:
    """A connection was found dead (``exc`` says how) and is being replaced."""
    _record(alias, RECONNECT, exc, "db.reconnect")


def counts(alias: str) -> dict[str, int]:
    """Retries and reconnects of ``alias`` since the process started."""
    with _lock:
        return {RETRY: _counts[alias, RETRY], RECONNECT: _counts[alias, RECONNECT]}


def reset() -> None:
    """Forget every count, as a fresh process would (tests)."""
    with _lock:
        _counts.clear()


def _record(alias: str, kind: str, exc: BaseException, operation: str) -> None:
    with _lock:
        _counts[alias, kind] += 1
    report(exc, operation, alias)
