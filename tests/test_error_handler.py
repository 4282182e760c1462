"""ErrorHandler: classification, suppression by frequency, summaries, stats, the decorator.

Time is stepped with an injected clock (no sleeping); log lines are read from a real logger
with a handler that keeps its records. Connection errors come from real loopback sockets.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connections_app.error_handler import (
    OVERFLOW_OPERATION,
    ErrorContext,
    ErrorHandler,
    get_global_error_handler,
    handle_connection_errors,
    reset_global_error_handler,
)
from connections_app.errors import ErrorCategory, Severity
from tests.conftest import FakeClock, refusing_port


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def lines(self) -> list[str]:
        return [r.getMessage() for r in self.records]


@pytest.fixture
def records() -> Records:
    return Records()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_handler(records, clock):
    def make(level: int = logging.INFO, **options) -> ErrorHandler:
        logger = logging.Logger("test.error_handler", level)
        logger.addHandler(records)
        return ErrorHandler(clock=clock, logger=logger, **options)

    return make


@pytest.fixture
def timed_out() -> TimeoutError:
    """A real read timeout: a loopback server that accepts and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        with socket.create_connection(server.getsockname(), timeout=0.01) as client:
            try:
                client.recv(1)
            except TimeoutError as exc:
                return exc
    pytest.fail("the silent server answered")


@pytest.fixture
def fresh_global():
    reset_global_error_handler()
    yield
    reset_global_error_handler()


ROOT = Path(__file__).resolve().parent.parent
CONTEXT = ErrorContext(operation="sync_project", endpoint="/api/projects")


def test_it_classifies_a_real_refused_connection(make_handler, records, refused):
    info = make_handler().handle_error(refused, CONTEXT)

    assert info.category is ErrorCategory.REFUSED
    assert info.severity is Severity.ERROR
    assert info.retryable is True
    assert info.suppressed is False
    assert info.message == "ConnectionRefusedError: [Errno 111] Connection refused"
    assert records.lines == [
        "sync_project /api/projects: refused: ConnectionRefusedError: "
        "[Errno 111] Connection refused"
    ]
    assert records.records[0].levelno == logging.ERROR


def test_it_logs_repeats_as_one_summary_when_the_window_closes(
    make_handler, records, clock, refused
):
    handler = make_handler()
    infos = []
    for n in range(4313):
        clock.now = 1000.0 + n * 59.0 / 4313
        infos.append(handler.handle_error(refused, CONTEXT))
    assert len(records.lines) == 1
    assert [i.suppressed for i in infos].count(True) == 4312

    clock.now = 1060.0
    assert handler.handle_error(refused, CONTEXT).suppressed is False
    assert records.lines[1:] == [
        "sync_project /api/projects: refused repeated 4,312 times in the last 60 s",
        "sync_project /api/projects: refused: ConnectionRefusedError: "
        "[Errno 111] Connection refused",
    ]
    assert records.records[1].levelno == logging.ERROR


def test_an_error_elsewhere_closes_expired_windows(make_handler, records, clock, refused):
    handler = make_handler()
    for _ in range(3):
        handler.handle_error(refused, CONTEXT)
    clock.now += 61
    handler.handle_error(refused, ErrorContext("other"))
    assert (
        records.lines[1] == "sync_project /api/projects: refused repeated 2 times in the last 60 s"
    )


def test_a_lone_error_gets_no_summary(make_handler, records, clock, refused):
    handler = make_handler()
    handler.handle_error(refused, CONTEXT)
    clock.now += 61
    handler.handle_error(refused, CONTEXT)
    handler.close()
    assert len(records.lines) == 2
    assert "repeated" not in " ".join(records.lines)


def test_close_all_windows_and_close_log_pending_repeats(make_handler, records, clock, refused):
    handler = make_handler()
    for _ in range(5):
        handler.handle_error(refused, CONTEXT)
    clock.now += 12.4
    assert handler.close_all_windows() == 1
    assert records.lines[-1] == (
        "sync_project /api/projects: refused repeated 4 times in the last 12 s"
    )
    handler.handle_error(refused, CONTEXT)
    handler.handle_error(refused, CONTEXT)
    handler.close()
    assert records.lines[-2:] == [
        "sync_project /api/projects: refused: ConnectionRefusedError: "
        "[Errno 111] Connection refused",
        "sync_project /api/projects: refused repeated 1 time in the last 1 s",
    ]


def test_close_expired_windows_logs_only_the_windows_that_have_ended(
    make_handler, records, clock, refused
):
    handler = make_handler()
    for _ in range(3):
        handler.handle_error(refused, ErrorContext("early"))
    handler.handle_error(refused, ErrorContext("lone"))
    clock.now += 30
    for _ in range(2):
        handler.handle_error(refused, ErrorContext("late"))
    logged = len(records.lines)

    clock.now = 1059.9
    assert handler.close_expired_windows() == 0
    clock.now = 1060.0
    assert handler.close_expired_windows() == 1
    assert records.lines[logged:] == ["early: refused repeated 2 times in the last 60 s"]
    assert handler.close_expired_windows() == 0

    # The window is closed: the next "early" error opens a new one and is logged in full.
    assert handler.handle_error(refused, ErrorContext("early")).suppressed is False
    clock.now = 1090.0
    assert handler.close_expired_windows() == 1
    assert records.lines[-1] == "late: refused repeated 1 time in the last 60 s"
    assert handler.close_all_windows() == 0
    assert "lone: refused repeated" not in " ".join(records.lines)


def test_the_fingerprint_is_stable_and_ignores_query_strings_and_credentials(make_handler, refused):
    handler = make_handler()
    base = handler.handle_error(
        refused, ErrorContext("fetch", "https://127.0.0.1:8443/api?page=1")
    ).fingerprint
    same = [
        ErrorContext("fetch", "https://127.0.0.1:8443/api?page=2&token=t"),
        ErrorContext("fetch", "https://127.0.0.1:8443/api#part", attempt=2),
    ]
    different = [
        ErrorContext("fetch", "https://127.0.0.1:8443/other"),
        ErrorContext("store", "https://127.0.0.1:8443/api"),
    ]
    assert re.fullmatch(r"[0-9a-f]{40}", base)
    assert all(handler.handle_error(refused, c).fingerprint == base for c in same)
    assert all(handler.handle_error(refused, c).fingerprint != base for c in different)
    assert make_handler().handle_error(refused, same[0]).fingerprint == base
    other_category = handler.handle_error(TimeoutError(), same[0]).fingerprint
    assert other_category != base


def test_secrets_never_reach_the_line_the_info_or_the_stats(make_handler, records):
    handler = make_handler()
    exc = ConnectionError("auth failed for redis://:pw-in-text@127.0.0.1:6379/0")
    context = ErrorContext(
        "redis.ping",
        "redis://app:pw-in-endpoint@127.0.0.1:6379/0?password=pw-in-query",
        token="pw-in-extra",
        headers={"Authorization": "Bearer pw-in-header"},
    )
    info = handler.handle_error(exc, context)

    everything = " ".join(
        [*records.lines, info.message, repr(context), str(handler.get_error_stats())]
    )
    assert "pw-in" not in everything
    assert "redis://app:***@127.0.0.1:6379/0" in records.lines[0]
    assert "token='***'" in records.lines[0]


def test_a_multi_line_message_is_logged_on_one_line(make_handler, records):
    make_handler().handle_error(ConnectionError("first\nsecond\n  third"), CONTEXT)
    assert records.lines[0].endswith("ConnectionError: first second third")


def test_level_follows_severity(make_handler, records, refused, timed_out):
    handler = make_handler()
    handler.handle_error(timed_out, CONTEXT)
    handler.handle_error(refused, CONTEXT)
    assert [r.levelno for r in records.records] == [logging.WARNING, logging.ERROR]


def test_a_traceback_only_for_unknown_errors_or_at_debug(make_handler, records, refused):
    make_handler().handle_error(refused, CONTEXT)
    make_handler().handle_error(ValueError("odd"), CONTEXT)
    make_handler(level=logging.DEBUG).handle_error(refused, CONTEXT)
    assert [r.exc_info is not None for r in records.records] == [False, True, True]


def test_it_evicts_the_least_recently_seen_and_logs_its_summary_first(
    make_handler, records, refused
):
    handler = make_handler(max_fingerprints=2)
    for _ in range(3):
        handler.handle_error(refused, ErrorContext("a"))
    handler.handle_error(refused, ErrorContext("b"))
    handler.handle_error(refused, ErrorContext("c"))

    assert records.lines[-2:] == [
        "a: refused repeated 2 times in the last 1 s",
        "c: refused: ConnectionRefusedError: [Errno 111] Connection refused",
    ]
    stats = handler.get_error_stats()
    assert sorted(s["operation"] for s in stats["by_fingerprint"].values()) == ["b", "c"]
    assert stats["total"] == 5


def test_it_counts_exactly_from_many_threads(make_handler, records, refused):
    handler = make_handler()
    threads, per_thread = 8, 2000
    barrier = threading.Barrier(threads)

    def hammer() -> None:
        barrier.wait(timeout=5)
        for _ in range(per_thread):
            handler.handle_error(refused, CONTEXT)

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)

    (entry,) = handler.get_error_stats()["by_fingerprint"].values()
    assert entry["count"] == threads * per_thread
    assert handler.get_error_stats()["total"] == threads * per_thread
    assert len(records.lines) == 1


def test_stats_describe_each_fingerprint(records, clock, refused):
    walls = iter([1_700_000_000.0, 1_700_000_030.0])
    handler = ErrorHandler(clock=clock, wall_clock=lambda: next(walls))
    handler.handle_error(refused, CONTEXT)
    handler.handle_error(refused, CONTEXT)

    stats = handler.get_error_stats()
    assert stats["total"] == 2
    assert stats["by_category"] == {"refused": 2}
    (entry,) = stats["by_fingerprint"].values()
    assert entry == {
        "category": "refused",
        "operation": "sync_project",
        "endpoint": "/api/projects",
        "count": 2,
        "first_seen": datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC),
        "last_seen": datetime(2023, 11, 14, 22, 13, 50, tzinfo=UTC),
        "severity": "error",
        "last_message": "ConnectionRefusedError: [Errno 111] Connection refused",
    }


def test_pending_counts_are_handed_over_and_can_be_given_back(make_handler, refused):
    handler = make_handler()
    for _ in range(3):
        handler.handle_error(refused, CONTEXT)
    taken = handler.take_pending()
    assert handler.take_pending() == {}
    handler.handle_error(ConnectionRefusedError("newer text"), CONTEXT)

    handler.restore_pending(taken)
    (pending,) = handler.take_pending().values()
    assert pending.count == 4
    assert pending.last_message == "ConnectionRefusedError: newer text"


def test_pending_counts_are_bounded_but_totals_stay_exact(make_handler, refused):
    handler = make_handler(max_pending=2)
    for n in range(5):
        handler.handle_error(refused, ErrorContext(f"op{n}"))
    pending = handler.take_pending()
    assert len(pending) == 3
    assert sum(p.count for p in pending.values()) == 5
    assert [p.operation for p in pending.values()][-1] == OVERFLOW_OPERATION


def test_the_global_handler_is_shared_and_resettable(fresh_global, refused, caplog):
    handler = get_global_error_handler()
    assert get_global_error_handler() is handler
    handler.handle_error(refused, CONTEXT)
    handler.handle_error(refused, CONTEXT)

    with caplog.at_level(logging.INFO, logger="connections_app.error_handler"):
        reset_global_error_handler()
    assert "refused repeated 1 time" in caplog.text
    assert get_global_error_handler() is not handler


def test_the_decorator_reports_and_reraises_sync_errors(fresh_global):
    port = refusing_port()

    @handle_connection_errors
    def connect() -> None:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    with pytest.raises(ConnectionRefusedError):
        connect()
    (entry,) = get_global_error_handler().get_error_stats()["by_fingerprint"].values()
    assert entry["operation"].endswith("connect")
    assert entry["category"] == "refused"
    assert connect.__name__ == "connect"


async def test_the_decorator_reports_and_reraises_async_errors(fresh_global):
    port = refusing_port()

    @handle_connection_errors
    async def api_call() -> None:
        await asyncio.open_connection("127.0.0.1", port)

    with pytest.raises(ConnectionRefusedError):
        await api_call()
    stats = get_global_error_handler().get_error_stats()
    assert stats["by_category"] == {"refused": 1}
    assert asyncio.iscoroutinefunction(api_call)


async def test_the_decorator_with_options_can_swallow_and_return_a_default(fresh_global):
    port = refusing_port()

    @handle_connection_errors(operation="probe.tcp", endpoint=f"127.0.0.1:{port}", reraise=False)
    async def probe() -> str:
        await asyncio.open_connection("127.0.0.1", port)
        return "up"

    @handle_connection_errors(operation="probe.sync", reraise=False, default="down")
    def probe_sync() -> str:
        raise TimeoutError

    assert await probe() is None
    assert probe_sync() == "down"
    operations = {
        s["operation"]: s["endpoint"]
        for s in get_global_error_handler().get_error_stats()["by_fingerprint"].values()
    }
    assert operations == {"probe.tcp": f"127.0.0.1:{port}", "probe.sync": ""}


async def test_the_decorator_passes_results_and_cancellation_through(fresh_global):
    @handle_connection_errors(reraise=False)
    async def fine() -> int:
        return 42

    @handle_connection_errors(reraise=False)
    async def cancelled() -> None:
        raise asyncio.CancelledError

    assert await fine() == 42
    with pytest.raises(asyncio.CancelledError):
        await cancelled()
    assert get_global_error_handler().get_error_stats()["total"] == 0


def test_the_global_handler_logs_its_summaries_at_interpreter_exit():
    script = (
        "from connections_app.error_handler import ErrorContext, get_global_error_handler\n"
        "from connections_app.logging_config import setup_logging\n"
        "setup_logging(log_level='INFO')\n"
        "for _ in range(3):\n"
        "    get_global_error_handler().handle_error(TimeoutError(), ErrorContext('exit'))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == ""
    assert "exit: timeout repeated 2 times" in done.stderr
