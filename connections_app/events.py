"""What the checks app announces, for whoever listens; it never knows who does.

The live dashboard (``realtime``) connects its receivers in its ``ready()``: the runner, the admin
and the models only send. So the check runner never loads the WebSocket stack, and a process
without the dashboard app installed announces to nobody at no cost.
"""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal

#: A result was stored or a status changed (after the commit that stored it). Receivers are
#: async-capable: ``async def receiver(sender, event, data, **kwargs)``.
check_event = Signal()
#: Checks were added, edited, paused, resumed or deleted (after the commit). Every view of the
#: checks must be rebuilt: the change may have come through ``update()``, which names no row.
checks_changed = Signal()


def listening() -> bool:
    """Whether anything receives ``check_event``: without a listener no event is even built."""
    return check_event.has_listeners()


async def announce(event: str, data: dict) -> None:
    """Hand one event (``check.result``, ``check.status``...) to every receiver."""
    await check_event.asend(sender=None, event=event, data=data)


def announce_checks_changed() -> None:
    """Say that the checks changed, once the current transaction (if any) commits: a view must
    never be rebuilt from a change that may still roll back."""
    transaction.on_commit(lambda: checks_changed.send(sender=None))
