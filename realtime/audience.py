"""Whether any dashboard watches: the runner builds and publishes no event when none does.

With the in-memory layer only this process's dashboards can hear an event, and they are there
when this process's hub runs. With Redis, the dashboards of every server count: each server
writes its clients' rows (``realtime.registry``) as its hub starts and every heartbeat, and the
answer here is those rows, read at most every ``REFRESH`` seconds in a thread of its own, so
asking never blocks the runner's event loop. Until the first read answers, someone watches.

A dashboard that opens while the answer is still "nobody" misses nothing: ``publish.skipped``
leaves a gap in the publisher's numbering, and the hub resyncs its clients on a gap.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import close_old_connections

from connections_app.error_handler import report
from realtime.hub import serving_loop
from realtime.limits import limits
from realtime.models import ConnectedClient

#: Seconds an answer from the database is used before it is read again.
REFRESH = 2.0

_lock = threading.Lock()
_reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dashboard-audience")
_answer = True
_read_at = float("-inf")
_reading = False


def watched() -> bool:
    """Whether a dashboard may hear an event published now (never blocks)."""
    layer = get_channel_layer()
    if layer is None:
        return False
    if isinstance(layer, InMemoryChannelLayer):
        answer = serving_loop() is not None
    else:
        answer = _rows_answer()
    if not answer:
        from realtime.publish import skipped  # publish imports the hub too: no cycle at load

        skipped()
    return answer


def _rows_answer() -> bool:
    global _reading
    with _lock:
        if not _reading and time.monotonic() - _read_at >= REFRESH:
            _reading = True
            _reader.submit(_read)
        return _answer


def _read() -> None:
    global _answer, _read_at, _reading
    try:
        close_old_connections()
        answer = ConnectedClient.objects.live(limits().registry_expiry).exists()
    except Exception as exc:
        report(exc, "ws.registry", "audience")
        answer = True  # unknown: publishing costs less than a dashboard left stale
    with _lock:
        _answer, _read_at, _reading = answer, time.monotonic(), False


def reset() -> None:
    """Forget the last answer (tests)."""
    global _answer, _read_at
    with _lock:
        _answer, _read_at = True, float("-inf")
