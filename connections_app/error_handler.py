"""Errors become counts and one log line: classify, fingerprint, suppress repeats, keep stats.

``report(exc, operation, endpoint="", **extra)`` is the one way the project reports an error;
the public ``handle_error(exc, ErrorContext(...))`` and ``@handle_connection_errors`` go through
the same steps. The first occurrence of a fingerprint (category, operation, endpoint) in a
window is logged in full; repeats inside the window are only counted, and one repeat line
reports them when the window closes: at the next error after it, at
``close_expired_windows()`` (a periodic call, so that a repeat line does not wait for that next
error), at ``close_all_windows()``, or at ``close()`` (the global handler closes at interpreter
exit). A connection that fails 4,000 times a minute costs two log lines a minute, not 4,000
tracebacks.

Memory is bounded: at most ``max_fingerprints`` are tracked (least recently seen evicted, its
pending repeat line logged first) and at most ``max_pending`` wait for ``flush_error_stats`` (the
rest are folded into one "(other errors)" count per category, so totals stay exact).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import inspect
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from connections_app.errors import ErrorCategory, Severity, classify
from connections_app.redaction import CLEAN, bare_urls, redact, redact_mapping, redact_url

MAX_MESSAGE = 500
MAX_ENDPOINT = 500
OVERFLOW_OPERATION = "(other errors)"
_LEVELS = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}


@dataclass(frozen=True)
class ErrorInfo:
    """What ``handle_error`` made of one exception."""

    category: ErrorCategory
    severity: Severity
    retryable: bool
    fingerprint: str
    #: The exception's type and text, secrets removed, on one line.
    message: str
    #: True when this occurrence was only counted, False when it was logged.
    suppressed: bool


class ErrorContext:
    """Where an error happened: an operation, an endpoint, and any extra detail to log."""

    __slots__ = ("operation", "endpoint", "extra")

    def __init__(self, operation: str, endpoint: str = "", **extra: object) -> None:
        self.operation = operation
        self.endpoint = endpoint
        self.extra = extra

    def __repr__(self) -> str:
        return redact(
            f"ErrorContext(operation={self.operation!r}, endpoint={self.endpoint!r}, "
            f"extra={redact_mapping(self.extra)!r})"
        )


@dataclass(slots=True)
class PendingCount:
    """Occurrences of one fingerprint not yet written to ``ErrorStat`` (see error_stats)."""

    category: str
    severity: str
    operation: str
    endpoint: str
    count: int
    first_seen: float
    last_seen: float
    last_message: str

    def absorb(self, other: PendingCount) -> None:
        """Add ``other``'s occurrences; the later of the two supplies the last message."""
        if other.last_seen >= self.last_seen:
            self.last_seen, self.last_message = other.last_seen, other.last_message
        self.count += other.count
        self.first_seen = min(self.first_seen, other.first_seen)


@dataclass(slots=True, eq=False)
class _Tracked:
    category: ErrorCategory
    operation: str
    endpoint: str
    count: int = 0
    first_seen: float = 0.0
    last_seen: float = 0.0
    raw_message: str = ""
    last_message: str = ""
    window_start: float = 0.0
    repeats: int = 0


class ErrorHandler:
    """Classifies, counts and logs connection errors; safe to share between threads."""

    def __init__(
        self,
        *,
        window: float = 60.0,
        max_fingerprints: int = 1000,
        max_pending: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        logger: logging.Logger | None = None,
    ) -> None:
        if window <= 0 or max_fingerprints < 1 or max_pending < 1:
            raise ValueError("window must be above 0, max_fingerprints and max_pending 1 or more")
        self.window = window
        self.max_fingerprints = max_fingerprints
        self.max_pending = max_pending
        self._clock = clock
        self._wall_clock = wall_clock
        self._logger = logger or logging.getLogger(__name__)
        self._lock = threading.Lock()
        self._tracked: OrderedDict[str, _Tracked] = OrderedDict()  # least recently seen first
        self._open: OrderedDict[str, _Tracked] = OrderedDict()  # open windows, oldest first
        self._pending: dict[str, PendingCount] = {}
        self._total = 0
        self._by_category: Counter[str] = Counter()

    def handle_error(self, exc: BaseException, context: ErrorContext) -> ErrorInfo:
        """Count ``exc``; log it unless its fingerprint was already logged in this window."""
        return self.report(exc, context.operation, context.endpoint, **context.extra)

    def report(
        self,
        error: BaseException | str,
        operation: str,
        endpoint: str = "",
        *,
        category: ErrorCategory | str | None = None,
        **extra: object,
    ) -> ErrorInfo:
        """Count one error; log it unless its fingerprint was already logged in this window.

        ``error`` is an exception, or the text of a failure that raised none (a probe whose
        target answered wrongly), which then needs its ``category``. A ``category`` given with
        an exception overrides the classifier's (the caller knew better).
        """
        if category is None:
            if isinstance(error, str):
                raise TypeError("report(text, ...) needs the category of the failure")
            category = classify(error)
        category = ErrorCategory(category)
        endpoint = _safe_endpoint(endpoint)
        fingerprint = _fingerprint(category, operation, endpoint)
        raw_message = error if isinstance(error, str) else _describe(error)
        with self._lock:
            now = self._clock()
            repeat_lines = self._close_windows(now)
            entry = self._tracked.get(fingerprint)
            if entry is None:
                entry = _Tracked(category, operation, endpoint)
                repeat_lines += self._track(fingerprint, entry, now)
            suppressed = self._record(fingerprint, entry, raw_message, now)
            message = entry.last_message
        self._log_repeat_lines(repeat_lines)
        info = ErrorInfo(
            category, category.severity, category.retryable, fingerprint, message, suppressed
        )
        if not suppressed:
            exc = None if isinstance(error, str) else error
            self._log_first(info, exc, _where(entry), extra)
        return info

    def close_expired_windows(self) -> int:
        """Log the repeat line of every window that has ended (and only those); how many.

        Meant for a periodic call: otherwise a repeat line waits for the next error, which may be
        hours away once a connection has recovered.
        """
        with self._lock:
            repeat_lines = self._close_windows(self._clock())
        self._log_repeat_lines(repeat_lines)
        return len(repeat_lines)

    def close_all_windows(self) -> int:
        """Close every open window now, logging one repeat line per fingerprint with repeats."""
        with self._lock:
            now = self._clock()
            repeat_lines = [
                _repeats_line(e, now, self.window) for e in self._open.values() if e.repeats
            ]
            for entry in self._open.values():
                entry.repeats = 0
            self._open.clear()
        self._log_repeat_lines(repeat_lines)
        return len(repeat_lines)

    def close(self) -> None:
        self.close_all_windows()

    def get_error_stats(self) -> dict:
        """Totals since start: overall, by category, and per tracked fingerprint."""
        with self._lock:
            return {
                "total": self._total,
                "by_category": dict(self._by_category),
                "by_fingerprint": {fp: _stat(e) for fp, e in self._tracked.items()},
            }

    def take_pending(self) -> dict[str, PendingCount]:
        """The counts accumulated since the last call, handed over (and forgotten here)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def restore_pending(self, pending: dict[str, PendingCount]) -> None:
        """Give back counts that could not be written, merged with any that came since."""
        with self._lock:
            for fingerprint, count in pending.items():
                newer = self._pending.get(fingerprint)
                if newer is not None:
                    count.absorb(newer)
                self._pending[fingerprint] = count

    def _track(self, fingerprint: str, entry: _Tracked, now: float) -> list[tuple[int, str]]:
        """Start tracking ``entry``; evict the least recently seen one if over the limit."""
        self._tracked[fingerprint] = entry
        if len(self._tracked) <= self.max_fingerprints:
            return []
        evicted_fingerprint, evicted = self._tracked.popitem(last=False)
        self._open.pop(evicted_fingerprint, None)
        if not evicted.repeats:
            return []
        return [_repeats_line(evicted, now, self.window)]

    def _close_windows(self, now: float) -> list[tuple[int, str]]:
        """Summaries of the windows that have ended; ``_open`` is ordered by start time."""
        repeat_lines = []
        while self._open:
            fingerprint, entry = next(iter(self._open.items()))
            if now - entry.window_start < self.window:
                break
            del self._open[fingerprint]
            if entry.repeats:
                repeat_lines.append(_repeats_line(entry, now, self.window))
                entry.repeats = 0
        return repeat_lines

    def _record(self, fingerprint: str, entry: _Tracked, raw_message: str, now: float) -> bool:
        """Count one occurrence; whether it falls in an open window (and so is suppressed)."""
        wall = self._wall_clock()
        self._tracked.move_to_end(fingerprint)
        if entry.raw_message != raw_message:
            # Redact once per distinct message, not once per occurrence.
            entry.raw_message, entry.last_message = raw_message, _clean(raw_message)
        entry.first_seen = entry.first_seen or wall
        entry.last_seen = wall
        entry.count += 1
        self._total += 1
        self._by_category[entry.category.value] += 1
        pending = self._pending.get(fingerprint) or self._new_pending(fingerprint, entry, wall)
        pending.count += 1
        pending.last_seen = wall
        pending.last_message = entry.last_message
        if fingerprint in self._open:
            entry.repeats += 1
            return True
        entry.window_start = now
        self._open[fingerprint] = entry
        return False

    def _new_pending(self, fingerprint: str, entry: _Tracked, wall: float) -> PendingCount:
        operation, endpoint = entry.operation, entry.endpoint
        if len(self._pending) >= self.max_pending:
            # Too many distinct errors between flushes: fold the newcomers into one count per
            # category, so memory stays bounded and the totals stay exact.
            operation, endpoint = OVERFLOW_OPERATION, ""
            fingerprint = _fingerprint(entry.category, operation, endpoint)
            if fingerprint in self._pending:
                return self._pending[fingerprint]
        severity = entry.category.severity
        pending = PendingCount(entry.category, severity, operation, endpoint, 0, wall, wall, "")
        self._pending[fingerprint] = pending
        return pending

    def _log_first(
        self, info: ErrorInfo, exc: BaseException | None, where: str, extra: dict
    ) -> None:
        line = f"{where}: {info.category}: {info.message}"
        if extra:
            # Last on the line: a redacted value swallows what follows it up to a space.
            line += " | " + " ".join(f"{k}={v!r}" for k, v in redact_mapping(extra).items())
        # A traceback only where it helps: an error we cannot name, or when asked for.
        debug = self._logger.isEnabledFor(logging.DEBUG)
        traceback = exc is not None and (info.category is ErrorCategory.UNKNOWN or debug)
        self._logger.log(
            _LEVELS[info.severity],
            "%s",
            line,
            exc_info=exc if traceback else None,
            extra=CLEAN,
        )

    def _log_repeat_lines(self, repeat_lines: list[tuple[int, str]]) -> None:
        for level, line in repeat_lines:
            self._logger.log(level, "%s", line, extra=CLEAN)


def _repeats_line(entry: _Tracked, now: float, window: float) -> tuple[int, str]:
    seconds = max(1, round(min(now - entry.window_start, window)))
    times = "time" if entry.repeats == 1 else "times"
    line = f"{_where(entry)}: {entry.category} repeated {entry.repeats:,} {times}"
    return _LEVELS[entry.category.severity], f"{line} in the last {seconds} s"


def _where(entry: _Tracked) -> str:
    return f"{entry.operation} {entry.endpoint}" if entry.endpoint else entry.operation


def _stat(entry: _Tracked) -> dict:
    return {
        "category": str(entry.category),
        "operation": entry.operation,
        "endpoint": entry.endpoint,
        "count": entry.count,
        "first_seen": datetime.fromtimestamp(entry.first_seen, UTC),
        "last_seen": datetime.fromtimestamp(entry.last_seen, UTC),
        "severity": str(entry.category.severity),
        "last_message": entry.last_message,
    }


@functools.lru_cache(maxsize=1024)
def _safe_endpoint(endpoint: str) -> str:
    """The endpoint as it may be stored and logged: no query string, no secrets."""
    bare = endpoint.split("?", 1)[0].split("#", 1)[0]
    return redact_url(bare)[:MAX_ENDPOINT]


@functools.lru_cache(maxsize=4096)
def _fingerprint(category: ErrorCategory, operation: str, endpoint: str) -> str:
    key = "\x1f".join((str(category), operation, endpoint))
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not break error handling
        text = ""
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def _clean(message: str) -> str:
    """Redacted (before joining lines, so multi-line secrets are seen whole), every URL cut to
    scheme, host, port and path (a library's text may quote one whole), one line."""
    return " ".join(bare_urls(message).split())[:MAX_MESSAGE]


_global_handler: ErrorHandler | None = None
_global_lock = threading.Lock()


def get_global_error_handler() -> ErrorHandler:
    """The process-wide handler, created on first use and closed at interpreter exit."""
    global _global_handler
    with _global_lock:
        if _global_handler is None:
            _global_handler = ErrorHandler()
            atexit.register(_global_handler.close)
        return _global_handler


def report(
    error: BaseException | str,
    operation: str,
    endpoint: str = "",
    *,
    category: ErrorCategory | str | None = None,
    **extra: object,
) -> ErrorInfo:
    """Report an error to the process-wide handler: the one way to report one.

    ``operation`` says what was being done (``results.store``, ``check.http``), ``endpoint``
    where (a database alias, a check's name, a server), ``extra`` adds detail to the log line.
    """
    return get_global_error_handler().report(error, operation, endpoint, category=category, **extra)


def reset_global_error_handler() -> None:
    """Close the process-wide handler (logging its repeat_lines); the next use makes a new one."""
    global _global_handler
    with _global_lock:
        handler, _global_handler = _global_handler, None
    if handler is not None:
        atexit.unregister(handler.close)
        handler.close()


def handle_connection_errors(
    func: Callable | None = None,
    *,
    operation: str | None = None,
    endpoint: str = "",
    reraise: bool = True,
    default: object = None,
) -> Callable:
    """Report any exception of ``func`` (sync or async) to the global handler.

    Usable bare (``@handle_connection_errors``) or with options. The operation defaults to the
    function's qualified name. The exception is re-raised unless ``reraise=False``, in which
    case ``default`` is returned. Cancellation and KeyboardInterrupt are never caught.
    """

    def decorate(function: Callable) -> Callable:
        where = operation or function.__qualname__

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args, **kwargs):
                try:
                    return await function(*args, **kwargs)
                except Exception as exc:
                    report(exc, where, endpoint)
                    if reraise:
                        raise
                    return default

            return async_wrapper

        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except Exception as exc:
                report(exc, where, endpoint)
                if reraise:
                    raise
                return default

        return wrapper

    return decorate(func) if func is not None else decorate
