"""Per-client delivery inside one server process.

Between processes an event travels once (``realtime.hub``); here it is handed to every local
client's outbox without waiting for any socket, and each client's own sender task writes it.
So a stuck client delays nobody, and what it can cost is bounded by its outbox and its acks.

Failures are classified with ``connections_app.errors.classify``: permanent (the client's
connection is gone: ``errors.DELIVERY_PERMANENT``; a socket that raises ``RuntimeError`` after
its close counts as gone, see ``Client.send``) drops the client at once; transient (outbox full,
timeout, anything else) gets one retry on the ``WEBSOCKET`` policy (first try within 5 s, the
retry after 100 ms within 2 s), then the client is told to reconnect and resync (close 4000).

A frame's first try costs no timer and no retry wrapper when the socket can take it at once
(``Client.write_now``: straight to daphne while its buffer has room, nothing awaited); only a
frame that must wait for room, or whose first write failed, goes through the bounded tries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from connections_app.error_handler import report
from connections_app.errors import DELIVERY_PERMANENT, ErrorCategory, classify
from connections_app.retry import WEBSOCKET, RetryPolicy, aretry
from realtime.client import Client
from realtime.outbox import Offer, OutboxFull
from realtime.protocol import CLOSE_RESYNC, frame_text
from realtime.registry import server_id

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivery:
    """How hard a frame is pushed at one socket: the retry policy, and how long each try may
    take (the first, then each retry: the caller bounds its tries, not the policy)."""

    policy: RetryPolicy = WEBSOCKET
    timeouts: tuple[float, ...] = (5.0, 2.0)


DELIVERY = Delivery()


def is_permanent(exc: BaseException) -> bool:
    """A send failure that no retry can fix: the connection is gone."""
    return classify(exc) in DELIVERY_PERMANENT


def _is_transient(exc: BaseException) -> bool:
    return not is_permanent(exc)


def _bounded(func: Callable[[], Awaitable[None]], timeouts: tuple[float, ...]):
    """``func`` as tries for ``aretry``: each call bounded by the next of ``timeouts``."""
    tries = iter(timeouts)
    last = timeouts[-1]

    async def attempt() -> None:
        async with asyncio.timeout(next(tries, last)):
            await func()

    return attempt


@dataclass
class BroadcastCounts:
    """What one broadcast did in this process: ``delivered`` frames went into an outbox,
    ``retried`` clients were behind and got their one retry, ``dropped`` were closed."""

    event: str
    clients: int = 0
    delivered: int = 0
    retried: int = 0
    dropped: int = 0
    filtered: int = 0

    def log(self) -> None:
        level = logging.DEBUG if not (self.retried or self.dropped) else logging.INFO
        logger.log(
            level,
            "broadcast %s: clients=%d delivered=%d retried=%d dropped=%d filtered=%d",
            self.event,
            self.clients,
            self.delivered,
            self.retried,
            self.dropped,
            self.filtered,
        )


async def notify_clients(
    clients: Iterable[Client],
    event: str,
    body: str,
    tags: frozenset[str] | None = None,
    delivery: Delivery = DELIVERY,
    check: int | None = None,
    chosen: bool = False,
) -> BroadcastCounts:
    """Offer one event (``body`` from ``protocol.encode_event``) to every client it is shown
    to (about ``check`` with ``tags``, or about no check: ``protocol.shown``), at once; to
    every one of ``clients`` when the caller ``chosen`` them (an ``updates`` body built for
    their watch).

    Never waits for a socket: a client past its outbox capacity gets ``catch_up`` in the
    background, one past twice the capacity (or already closing) is dropped.
    """
    counts = BroadcastCounts(event)
    refused = []
    for client in clients:
        counts.clients += 1
        if not chosen and not client.wants(check, tags, event):
            counts.filtered += 1
            continue
        offer = client.outbox.offer(body)
        if offer is Offer.QUEUED:
            counts.delivered += 1
        elif offer is Offer.LATE:
            counts.retried += 1
            if client.catching_up is None or client.catching_up.done():
                client.catching_up = client.start(catch_up(client, delivery))
        else:
            counts.dropped += 1
            refused.append(client)
    if refused:
        error = OutboxFull(f"outbox over {2 * refused[0].outbox.capacity} frames")
        await asyncio.gather(*(drop(c, error) for c in refused))
    counts.log()
    return counts


async def catch_up(client: Client, delivery: Delivery = DELIVERY) -> None:
    """The retry of an offer that found the outbox full: after the policy's delay, the outbox
    must get back within its capacity inside the retry's timeout, or the client is dropped."""
    client.retries += 1
    # The first try is the offer that found no room: it had no time to wait.
    has_room = _bounded(client.outbox.wait_for_room, (0.0, *delivery.timeouts[1:]))
    try:
        await aretry(has_room, delivery.policy, frozenset({ErrorCategory.TIMEOUT}))
    except TimeoutError:
        await drop(client, OutboxFull(f"outbox still over {client.outbox.capacity} frames"))


async def run_sender(client: Client, delivery: Delivery = DELIVERY) -> None:
    """Write the client's outbox to its socket in order until the client closes.

    Each frame gets the next sequence number; after each, the client's ack lag is checked
    (daphne buffers without bound for a socket that is not read: acks are the only signal).
    """
    while (body := await client.outbox.get()) is not None:
        try:
            await deliver(client, client.next_seq(), body, delivery)
        except Exception as exc:
            await drop(client, exc)
            return
        client.delivered += 1
        if await close_if_lagging(client):
            return


async def deliver(client: Client, seq: int, body: str, delivery: Delivery = DELIVERY) -> None:
    """Write frame ``seq`` of ``body`` to the client, or raise why it could not.

    First at once (``Client.write_now``); when the socket cannot take it without waiting,
    through ``send`` with the tries bounded by ``delivery.timeouts``; when that first write
    failed, a permanent failure is raised as it is and a transient one gets the policy's retry
    (after its delay, bounded by the retry's timeout), as if the first try had been bounded.
    """
    failed = None
    try:
        if client.write_now(seq, body):
            return
    except Exception as exc:
        failed = exc
    text = frame_text(seq, body)
    timeouts = delivery.timeouts if failed is None else delivery.timeouts[1:] or delivery.timeouts
    await aretry(
        _bounded(lambda: client.send(text), timeouts),
        delivery.policy,
        _is_transient,
        on_retry=lambda *_: _count_retry(client),
        failed=failed,
    )


class AckTimeout(TimeoutError):
    """A client too far behind its acks (the classifier files it under timeout)."""


async def close_if_lagging(client: Client) -> bool:
    """Tell a client too far behind its acks to reconnect and resync; True if it was."""
    reason = client.lag()
    if reason is None:
        return False
    report(AckTimeout(reason), "ws.ack", server_id(), client=client.id)
    await client.close(CLOSE_RESYNC, reason)
    return True


def _count_retry(client: Client) -> None:
    client.retries += 1


async def drop(client: Client, exc: BaseException) -> None:
    """Close a client after a failed delivery, through the error handler (one log line per
    kind of failure, suppressed when it repeats)."""
    if client.closed:
        return
    report(exc, "ws.send", server_id(), client=client.id)
    reason = "connection gone" if is_permanent(exc) else "delivery failed: resync"
    await client.close(CLOSE_RESYNC, reason)
