"""This server process's end of the channel layer.

Each server process joins the dashboard group once, with one channel of its own, so an event
costs one layer message per process (measured: one ``group_send`` to 1,000 receivers took about
29 ms, 100 separate sends 180 ms). The hub hands each event to the local clients
(``broadcast.notify_clients``). Its heartbeat closes the sockets whose session may no longer
watch (``access.recheck``), renews the group membership, writes the registry rows and the error
counts, and pushes the client count and the error stats when they change.

Results and status changes are not written one frame each: the hub keeps them until its next
flush and writes each client one ``updates`` frame (``realtime.updates``), at most one per
``Limits.flush_interval``, whatever the rate of results.

Lost events are repaired, not ignored: every publisher numbers its events, and a gap (a publish
that failed or was skipped, a layer that dropped a message, a receive that failed) makes the
hub push a fresh snapshot to its clients.

A hub belongs to one event loop (its tasks, events and layer channel do): ``get_hub()`` gives
the running loop's. A server process has one loop; a test has its own, and a hub left behind by
a loop that closed is never reused.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections import OrderedDict

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from connections_app.alerts.models import failed_count
from connections_app.error_handler import report
from connections_app.error_stats import flush_error_stats
from connections_app.errors import RETRYABLE
from connections_app.retry import RetryPolicy, aretry
from realtime.access import REASONS, recheck
from realtime.broadcast import notify_clients, run_sender
from realtime.client import Client
from realtime.limits import limits
from realtime.protocol import GROUP, Watch, encode_event
from realtime.registry import clients_elsewhere, registry, server_id, sync_rows
from realtime.snapshot import recent_errors, send_snapshot
from realtime.updates import UPDATES, Entry, Pending, bodies, newest_per_check

logger = logging.getLogger(__name__)

#: Receiving from the layer: back off up to 5 s while it fails, for as long as clients watch.
LISTEN = RetryPolicy(attempts=None, base_delay=0.2, factor=2.0, cap=5.0, jitter=0.2)
#: A connecting client waits at most this long for the hub to join the group; after that it
#: gets its snapshot anyway and the hub resyncs it once the layer answers.
JOIN_WAIT = 2.0
#: Any single layer or database call of the heartbeat.
CALL_TIMEOUT = 5.0
#: Judging every open socket's session: about 4 ms per distinct session on SQLite (measured,
#: 300 sessions in 1.3 s), so 1,000 staff each on their own session need more than one call's
#: 5 s; a recheck that times out closes nobody.
ACCESS_TIMEOUT = 30.0
#: Publishers remembered for gap detection (each runchecks or server process is one).
PUBLISHERS_KEPT = 64
RESYNC_ROUNDS = 3
#: What the page shows while this process's layer calls fail (docs/EVENTS.md, layer.status).
LAYER_DOWN = {
    "ok": False,
    "message": "live updates paused: the server cannot reach its channel layer",
}
LAYER_UP = {"ok": True}


class Hub:
    """Started by the first client of a process, stopped by the heartbeat after the last left."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._stopping = False
        self._channel: str | None = None
        self._group_lost = False
        self._publishers: OrderedDict[str, int] = OrderedDict()
        self._resync: asyncio.Task | None = None
        self._resync_again = False
        self._pushed: dict[str, dict] = {}
        #: Set when a layer call fails, cleared when one succeeds: the server's own knowledge
        #: that events cannot reach it, told to the pages (``layer.status``).
        self._layer_down = False
        self._pending = Pending(limits().max_pending)
        self._flusher: asyncio.Task | None = None
        self._last_flush = float("-inf")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done() and not self._stopping

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the hub runs in (the server's), None when it does not run."""
        return self._loop if self.running else None

    async def join(self, client: Client) -> None:
        """Register ``client``, start its sender and send its first snapshot."""
        registry.add(client)
        client.start(run_sender(client))
        if self._stopping and self._task is not None:
            # Let the last run leave the group first: two runs never overlap.
            await asyncio.gather(self._task, return_exceptions=True)
        ready = self._start()
        try:
            async with asyncio.timeout(JOIN_WAIT):
                await ready.wait()
        except TimeoutError:
            self._group_lost = True
        await send_snapshot(client)
        if self._layer_down:
            client.outbox.offer(encode_event("layer.status", LAYER_DOWN))

    async def stop(self) -> None:
        """Stop now rather than at the next heartbeat (tests, before their event loop ends)."""
        for task in (self._task, self._resync, self._flusher):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def request_resync(self) -> None:
        """Push a fresh snapshot to every local client; requests during one are merged."""
        if self._resync is not None and not self._resync.done():
            self._resync_again = True
            return
        self._resync = asyncio.ensure_future(self._resync_all())

    def _start(self) -> asyncio.Event:
        if not self.running:
            self._loop, self._stopping = asyncio.get_running_loop(), False
            self._ready = asyncio.Event()
            self._publishers.clear()
            self._pushed = {"layer.status": LAYER_UP}  # pages assume it until told otherwise
            self._pending = Pending(limits().max_pending)
            self._task = self._loop.create_task(self._run())
        return self._ready

    async def _run(self) -> None:
        layer = get_channel_layer()
        listener = asyncio.ensure_future(self._listen(layer)) if layer else None
        if layer is None:
            self._ready.set()
        try:
            # Runners in other processes publish only while some server's rows say that a
            # dashboard watches (``realtime.audience``): write them now, not a heartbeat later.
            await self._write_rows()
            while registry:
                await asyncio.sleep(limits().heartbeat)
                try:
                    await self._heartbeat(layer)
                except Exception as exc:
                    # One bad heartbeat must not end live updates for the whole process.
                    report(exc, "ws.heartbeat", server_id())
            self._stopping = True
        finally:
            for task in (listener, self._flusher):
                if task is not None:
                    task.cancel()
                    await asyncio.gather(task, return_exceptions=True)
            await self._leave_group(layer)
            # With no client left, this server's rows go at once instead of expiring.
            await self._write_rows()

    async def _listen(self, layer) -> None:
        """Join the group with a channel of this process, then hand on what arrives."""
        self._channel = await aretry(
            layer.new_channel, LISTEN, RETRYABLE, on_retry=self._layer_failed
        )
        await self._join_group(layer)
        self._ready.set()
        while True:
            message = await aretry(
                lambda: layer.receive(self._channel), LISTEN, RETRYABLE, on_retry=self._layer_failed
            )
            try:
                await self._dispatch(message)
            except Exception as exc:
                report(exc, "ws.dispatch", server_id())
            # A burst arrives already queued and receive() would not yield: let the senders
            # write between two events.
            await asyncio.sleep(0)

    async def _dispatch(self, message: dict) -> None:
        kind = message.get("type")
        if kind == "dashboard.event":
            self._check_sequence(message.get("publisher"), message.get("n"))
            tags, check = message.get("tags"), message.get("check")
            await notify_clients(
                registry.clients(),
                message["event"],
                message["body"],
                frozenset(tags) if tags is not None else None,
                check=check if isinstance(check, int) else None,
            )
        elif kind == "dashboard.updates":
            self._check_sequence(message.get("publisher"), message.get("n"))
            self._pending.add(
                map(Entry.from_wire, message.get("results") or ()),
                map(Entry.from_wire, message.get("statuses") or ()),
            )
            self._schedule_flush()
        elif kind == "dashboard.resync":
            self.request_resync()

    def _schedule_flush(self) -> None:
        if self._pending and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.ensure_future(self._flush_while_pending())

    async def _flush_while_pending(self) -> None:
        """Flush after a short gather, and never sooner than ``flush_interval`` after the
        previous flush; again while more arrived meanwhile."""
        loop = asyncio.get_running_loop()
        while self._pending:
            wanted = limits()
            due = max(loop.time() + wanted.flush_gather, self._last_flush + wanted.flush_interval)
            await asyncio.sleep(due - loop.time())
            self._last_flush = loop.time()
            try:
                await self.flush_updates()
            except Exception as exc:
                report(exc, "ws.dispatch", server_id())

    async def flush_updates(self) -> None:
        """Write every client one ``updates`` frame with what arrived since the last flush
        (several when it is larger than ``updates_frame_bytes``)."""
        results, statuses, overflowed = self._pending.take()
        if overflowed:
            logger.info("more than %d updates waiting: resync", self._pending.max_pending)
            self.request_resync()
            return
        settings = limits()
        results = newest_per_check(results, settings.sparkline_points)
        by_watch: dict[Watch, list[Client]] = {}
        for client in registry.clients():
            by_watch.setdefault(client.watch, []).append(client)
        for watch, clients in by_watch.items():
            for body in bodies(results, statuses, watch, settings.updates_frame_bytes):
                await notify_clients(clients, UPDATES, body, chosen=True)

    def _check_sequence(self, publisher: object, n: object) -> None:
        """A publisher's events are numbered 1, 2, 3...: a gap means lost events.

        A publisher first heard of past its first event may have lost some since the clients
        took their snapshots, or not: the hub cannot tell, so it resyncs (once per publisher).
        """
        if not isinstance(publisher, str) or not isinstance(n, int):
            return
        last = self._publishers.pop(publisher, 0)
        self._publishers[publisher] = n
        if len(self._publishers) > PUBLISHERS_KEPT:
            self._publishers.popitem(last=False)
        if n != last + 1:
            level = logging.INFO if last else logging.DEBUG
            logger.log(level, "publisher %s: event %d after %d: resync", publisher, n, last)
            self.request_resync()

    async def _heartbeat(self, layer) -> None:
        await self._close_refused()
        if self._channel is not None:
            # channels_redis expires group members, and a restarted Redis forgets them.
            await self._join_group(layer)
            await self._probe_layer(layer)
        await self._push_if_changed("layer.status", LAYER_DOWN if self._layer_down else LAYER_UP)
        if self._layer_down:
            # No event can arrive: the pages stay current from a snapshot each heartbeat.
            self.request_resync()
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                elsewhere, errors, failed = await database_sync_to_async(_write_heartbeat)(
                    registry.clients()
                )
        except Exception as exc:
            report(exc, "ws.registry", server_id())
            return
        await self._push_if_changed("clients", {"count": elsewhere + len(registry)})
        await self._push_if_changed("errors.updated", {"errors": errors})
        await self._push_if_changed("alerts.failed", {"count": failed})

    async def _close_refused(self) -> None:
        """Close the sockets whose session ended or lost the right to watch since the last
        heartbeat. While the database cannot answer, sockets stay open (the dashboard is how
        staff see that outage) and are judged at the first heartbeat that reaches it."""
        try:
            async with asyncio.timeout(ACCESS_TIMEOUT):
                refused = await database_sync_to_async(recheck)(registry.clients())
        except Exception as exc:
            report(exc, "ws.access", server_id())
            return
        closes = (client.close(code, REASONS[code]) for client, code in refused)
        await asyncio.gather(*closes, return_exceptions=True)  # a socket gone meanwhile

    async def _push_if_changed(self, event: str, data: dict) -> None:
        """Push what the header and the error panel show, when it changed."""
        if self._pushed.get(event) != data:
            self._pushed[event] = data
            await notify_clients(registry.clients(), event, encode_event(event, data))

    async def _join_group(self, layer) -> None:
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await layer.group_add(GROUP, self._channel)
        except Exception as exc:
            self._layer_failed(exc)
            return
        self._layer_down = False
        if self._group_lost:
            self._group_lost = False
            self.request_resync()

    async def _probe_layer(self, layer) -> None:
        """Send this process's channel a message through the layer: the pub/sub layer's
        group_add is local and its receive task swallows a lost Redis, so only a send tells
        whether the layer is reachable (the message comes back and is ignored)."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await layer.send(self._channel, {"type": "dashboard.probe"})
        except Exception as exc:
            self._layer_failed(exc)
            return
        self._layer_down = False

    async def _leave_group(self, layer) -> None:
        channel, self._channel = self._channel, None
        if layer is None or channel is None:
            return
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await layer.group_discard(GROUP, channel)
        except Exception as exc:
            report(exc, "ws.listen", server_id())

    async def _write_rows(self) -> None:
        """Write this server's registry rows (and error counts) now."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT):
                await database_sync_to_async(_write_heartbeat)(registry.clients())
        except Exception as exc:
            report(exc, "ws.registry", server_id())

    def _layer_failed(self, exc: BaseException, *_) -> None:
        self._group_lost = True
        self._layer_down = True
        report(exc, "ws.listen", server_id())

    async def _resync_all(self) -> None:
        for _ in range(RESYNC_ROUNDS):
            self._resync_again = False
            await asyncio.gather(*(send_snapshot(c) for c in registry.clients()))
            if not self._resync_again:
                return


def _write_heartbeat(clients: list[Client]) -> tuple[int, list[dict], int]:
    """Write this server's registry rows and error counts; read what the pages show: the
    clients of the other servers, the recent error stats and the count of failed alerts."""
    expiry = limits().registry_expiry
    sync_rows(server_id(), clients, expiry)
    # A daphne process without a check runner must still turn its errors into ErrorStat rows.
    flush_error_stats()
    errors = recent_errors(limits().error_stats)
    return clients_elsewhere(server_id(), expiry), errors, failed_count()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()
_hubs_lock = threading.Lock()  # publishers look for the serving loop from other threads


def get_hub() -> Hub:
    """The hub of the running event loop, made on first use."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.get(loop)
        if hub is None:
            # A hub refers to its loop (tasks, events), so a closed loop's entry is dropped
            # here rather than waiting for a collection that the reference would prevent.
            for closed in [other for other in _hubs if other.is_closed()]:
                del _hubs[closed]
            hub = _hubs[loop] = Hub()
        return hub


def serving_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of this process's running hub (the server's), None when none runs."""
    with _hubs_lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        loop = hub.loop
        if loop is not None and not loop.is_closed():
            return loop
    return None
