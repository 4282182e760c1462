"""Hand an event to every dashboard: one channel-layer message to the group of server processes.

Called after the state change is stored. It never raises and never waits long: a failed or
skipped publish is counted, reported once through the error handler, and repaired by the
servers (the events of one publisher are numbered; a gap makes them push fresh snapshots).

Results and status changes (``check.result``, ``check.status``, and ``check.results``: a
runner's whole flush in one event) travel as ``dashboard.updates`` messages of pre-encoded
entries, at most ``CHUNK`` each, that the servers coalesce into one frame per client per flush
(``realtime.updates``). Other events travel as one ready frame body each.

Nothing is built while nobody watches (``audience.watched``): the runner asks
``connections_app.events.listening()`` first. Events skipped so leave a gap in the numbering,
so a server that starts listening later resyncs rather than miss them.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import uuid
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from connections_app.error_handler import report
from connections_app.retry import RetryPolicy
from realtime.hub import serving_loop
from realtime.protocol import GROUP, encode_event, redact_strings
from realtime.registry import server_id
from realtime.updates import COALESCED, RESULTS, STATUS, result_entry, status_entry

#: A publish that takes longer than this is abandoned (the servers resync on the gap).
PUBLISH_TIMEOUT = 1.0
#: After a failure, publishes are skipped for the policy's next delay (1 s, 2 s, 4 s, then
#: 5 s while it keeps failing): a dead Redis costs the runner one timeout per delay, not one
#: per event.
BACKOFF = RetryPolicy(attempts=None, base_delay=1.0, factor=2.0, cap=5.0)
#: Entries per ``dashboard.updates`` layer message: a runner catching up flushes thousands of
#: results at once, and one layer message must stay small (Redis, msgpack, a deepcopy in memory).
CHUNK = 500


@dataclass
class PublishStats:
    published: int = 0
    failed: int = 0
    skipped: int = 0


stats = PublishStats()
PUBLISHER = f"{uuid.uuid4().hex[:12]}"
_numbers = itertools.count(1)
_numbers_lock = threading.Lock()
_backoff = BACKOFF
_skip_until = float("-inf")


def reset() -> None:
    """Start over as a fresh process would: a new publisher, counts at 0, no cool-down (tests)."""
    global PUBLISHER, _numbers, _backoff, _skip_until
    with _numbers_lock:
        PUBLISHER, _numbers = f"{uuid.uuid4().hex[:12]}", itertools.count(1)
    stats.published = stats.failed = stats.skipped = 0
    _backoff, _skip_until = BACKOFF, float("-inf")


def skipped() -> None:
    """Nobody watched, so events were not published: use up a number, so the next server that
    hears this publisher sees a gap and resyncs its clients."""
    with _numbers_lock:
        next(_numbers)


def _number() -> tuple[str, int]:
    with _numbers_lock:
        return PUBLISHER, next(_numbers)


def updates_messages(event_type: str, data: dict) -> list[dict]:
    """The layer messages for results and status changes: redacted entries, ``CHUNK`` each."""
    data = redact_strings(data)
    if event_type == RESULTS:
        results = [result_entry(r) for r in data.get("results") or ()]
        statuses = [status_entry(c) for c in data.get("changes") or ()]
    elif event_type == STATUS:
        results, statuses = [], [status_entry(data)]
    else:
        results, statuses = [result_entry(data)], []
    # Results first, then statuses: a change is announced after the result that made it.
    tagged = [("results", e) for e in results] + [("statuses", e) for e in statuses]
    messages = []
    for start in range(0, max(len(tagged), 1), CHUNK):
        publisher, n = _number()
        message = {"type": "dashboard.updates", "publisher": publisher, "n": n}
        message |= {"results": [], "statuses": []}
        for key, item in tagged[start : start + CHUNK]:
            message[key].append(item.wire())
        messages.append(message)
    return messages


def event_message(event_type: str, data: dict) -> dict:
    """The layer message for one event, its frame body serialized once (secrets redacted)."""
    publisher, n = _number()
    return {
        "type": "dashboard.event",
        "publisher": publisher,
        "n": n,
        "event": event_type,
        "tags": _tags(data),
        "check": _check_id(data),
        "body": encode_event(event_type, redact_strings(data)),
    }


def _tags(data: dict) -> list[str] | None:
    """The tags a client filter matches against; None for events about no check in particular."""
    check = data.get("check")
    tags = check.get("tags") if isinstance(check, dict) else data.get("tags")
    return list(tags) if isinstance(tags, list) else None


def _check_id(data: dict) -> int | None:
    """The id of the check an event is about (a check's page gets only its own); None."""
    check = data.get("check")
    found = check.get("id") if isinstance(check, dict) else data.get("id")
    return found if isinstance(found, int) and not isinstance(found, bool) else None


async def publish_event(event_type: str, data: dict) -> None:
    """Send one event (``check.results``, ``check.result``, ``check.status``...) to every
    dashboard."""
    try:
        if event_type in COALESCED:
            messages = updates_messages(event_type, data)
        else:
            messages = [event_message(event_type, data)]
    except Exception as exc:
        _failed(exc, event_type)
        return
    for message in messages:
        await _send(message, event_type)


async def request_resync() -> None:
    """Ask every server to push a fresh snapshot (checks were added, edited or deleted)."""
    await _send({"type": "dashboard.resync"}, "resync")


def publish_event_sync(event_type: str, data: dict) -> None:
    """``publish_event`` for synchronous code (admin actions, signals)."""
    _run_sync(publish_event, event_type, data)


def request_resync_sync() -> None:
    _run_sync(request_resync)


def _run_sync(func, *args) -> None:
    try:
        async_to_sync(func)(*args)
    except Exception as exc:  # e.g. called from a thread that runs an event loop
        _failed(exc, func.__name__)


async def _send(message: dict, what: str) -> None:
    global _backoff, _skip_until
    if time.monotonic() < _skip_until:
        stats.skipped += 1
        return
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            await _group_send(message)
    except Exception as exc:
        _skip_until = time.monotonic() + _backoff.next_delay()
        _backoff = _backoff.next()
        _failed(exc, what)
        return
    _backoff = BACKOFF
    stats.published += 1


async def _group_send(message: dict) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, InMemoryChannelLayer):
        # The in-memory layer's queues belong to the server's event loop: a publisher running
        # in another loop (a thread) hands the message over instead of touching them.
        loop = serving_loop()
        if loop is None:
            return  # nobody watches in this process
        if loop is not asyncio.get_running_loop():
            future = asyncio.run_coroutine_threadsafe(layer.group_send(GROUP, message), loop)
            await asyncio.wrap_future(future)
            return
    await layer.group_send(GROUP, message)


def _failed(exc: BaseException, what: str) -> None:
    stats.failed += 1
    report(exc, "ws.publish", server_id(), what=what)
