"""What the checks app announces, for whoever listens; it never knows who does.

The live dashboard (``realtime``) subscribes in its ``ready()``: the runner, the admin and the
models only announce. So the check runner never loads the WebSocket stack, and a process
without the dashboard app installed announces to nobody at no cost.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from django.db import transaction
from django.dispatch import Signal

#: ``await listener(event, data)`` for every event announced.
Listener = Callable[[str, dict], Awaitable[None]]

# Not a Django Signal: ``Signal.asend`` gathers its receivers in new tasks on every call, and
# the runner announces one event per stored result.
_listeners: list[Listener] = []

#: Checks were added, edited, paused, resumed or deleted (after the commit). Every view of the
#: checks must be rebuilt: the change may have come through ``update()``, which names no row.
checks_changed = Signal()


def subscribe(listener: Listener) -> None:
    """Hear every event from now on (once, however often it subscribes)."""
    if listener not in _listeners:
        _listeners.append(listener)


def unsubscribe(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def listening() -> bool:
    """Whether anything hears events: without a listener no event is even built."""
    return bool(_listeners)


async def announce(event: str, data: dict) -> None:
    """Hand one event (``check.result``, ``check.status``...) to every listener, after the
    commit that stored what it tells."""
    for listener in _listeners:
        await listener(event, data)


def announce_checks_changed() -> None:
    """Say that the checks changed, once the current transaction (if any) commits: a view must
    never be rebuilt from a change that may still roll back."""
    transaction.on_commit(lambda: checks_changed.send(sender=None))
