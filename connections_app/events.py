"""What the checks app announces, for whoever listens; it never knows who does.

The live dashboard (``realtime``) subscribes in its ``ready()``: the runner, the admin and the
models only announce. So the check runner never loads the WebSocket stack, and a process
without the dashboard app installed announces to nobody at no cost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.db import transaction
from django.dispatch import Signal

#: ``await listener(event, data)`` for every event announced. The runner announces one
#: ``check.results`` event per flush: ``{"results": [{"check", "result", "uptime_24h", "uptime",
#: "latency_24h"}, ...],
#: "changes": [check.status data, ...]}``; ``check.result`` and ``check.status`` one at a time
#: work too (docs/EVENTS.md).
Listener = Callable[[str, dict], Awaitable[None]]
#: ``audience()``: whether a listener's listeners are there now (cheap, never blocks).
Audience = Callable[[], bool]

# Not a Django Signal: ``Signal.asend`` gathers its receivers in new tasks on every call, and
# the runner announces on every flush.
_listeners: list[Listener] = []
_audiences: dict[Listener, Audience] = {}

#: Checks were added, edited, paused, resumed or deleted (after the commit). Every view of the
#: checks must be rebuilt: the change may have come through ``update()``, which names no row.
checks_changed = Signal()


def subscribe(listener: Listener, audience: Audience | None = None) -> None:
    """Hear every event from now on (once, however often it subscribes). With ``audience``,
    the listener counts as listening only while ``audience()`` says someone is there."""
    if listener not in _listeners:
        _listeners.append(listener)
    if audience is not None:
        _audiences[listener] = audience


def unsubscribe(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)
    _audiences.pop(listener, None)


def listening() -> bool:
    """Whether anything hears events: when nothing does, no event is even built."""
    return any(_audiences.get(listener, _always)() for listener in _listeners)


def _always() -> bool:
    return True


async def announce(event: str, data: dict) -> None:
    """Hand one event (``check.results``, ``check.status``...) to every listener, after the
    commit that stored what it tells."""
    for listener in _listeners:
        await listener(event, data)


def announce_checks_changed() -> None:
    """Say that the checks changed, once the current transaction (if any) commits: a view must
    never be rebuilt from a change that may still roll back."""
    transaction.on_commit(lambda: checks_changed.send(sender=None))
