"""Dashboard clients of the fault suite, each behaving as one kind of browser.

- ``Reader``: a healthy page. Reads every frame, acks it, keeps the ``check.status`` events
  (inside ``updates`` frames) and when each snapshot was built; when the server closes it (a
  resync, a restart) it reconnects and starts from the new snapshot, as the page does.
- ``Silent``: a tab that never reads. The server must close it on missing acks, never grow.
- ``Rapid``: a page that reconnects as fast as it can: snapshot, close, again.

Every client runs until ``stop()``; each loop is bounded by the run's own end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime

from tests.realtime import servers
from tests.realtime.helpers import events_of

#: What a reader waits before reconnecting (the page backs off with jitter; this is its floor).
RECONNECT_AFTER = 0.5
#: How long a client may take to close when the run ends (seconds).
STOP_WAIT = 5.0


class Client:
    def __init__(self, port: int, cookie: str) -> None:
        self.port, self.cookie = port, cookie
        self.connects = 0
        self.stopped_at: datetime | None = None
        self.errors: list[str] = []
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        #: The socket open now: closed by ``stop()`` so that the loop ends on its own.
        self.socket = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Close the socket and let the loop end (a task cancelled inside ``connect`` would
        leave its transport open); cancel only what does not end within ``STOP_WAIT``."""
        self.stopped_at = datetime.now(UTC)
        self._stopping.set()
        if self.socket is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.socket.close(), STOP_WAIT)
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def connect(self, **options):
        self.socket = await servers.ws_connect(self.port, self.cookie, **options)
        self.connects += 1
        if self._stopping.is_set():  # the run ended while this connect was on its way
            await self.socket.close()
        return self.socket

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._once()
            except Exception as exc:  # the server away, closed, refused: counted, try again
                self.errors.append(type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), RECONNECT_AFTER)

    async def _once(self) -> None:
        raise NotImplementedError


class Reader(Client):
    def __init__(self, port: int, cookie: str) -> None:
        super().__init__(port, cookie)
        #: (name, from, to, at) of every check.status event received.
        self.changes: set[tuple[str, str, str, datetime]] = set()
        #: When each snapshot received was built (its frame's ``at``).
        self.snapshots: list[datetime] = []
        self.close_codes: list[int | None] = []

    async def _once(self) -> None:
        client = await self.connect(max_queue=None)
        try:
            async for text in client:
                frame = json.loads(text)
                if frame["type"] == "snapshot":
                    self.snapshots.append(datetime.fromisoformat(frame["at"]))
                for kind, data in events_of(frame):
                    if kind == "check.status":
                        at = datetime.fromisoformat(data["at"])
                        self.changes.add((data["name"], data["from"], data["to"], at))
                await client.send(json.dumps({"type": "ack", "seq": frame["seq"]}))
        finally:
            self.close_codes.append(client.close_code)
            await client.close()

    def covered(self, name: str, from_: str, to: str, at: datetime) -> bool:
        """Whether this page learnt of a change: its event, or a snapshot built after it."""
        return (name, from_, to, at) in self.changes or any(s >= at for s in self.snapshots)

    @property
    def first_snapshot(self) -> datetime | None:
        return self.snapshots[0] if self.snapshots else None


class Silent(Client):
    """Opens the socket and never reads a frame: the server must close it on missing acks."""

    async def _once(self) -> None:
        # A tiny receive window: what the server writes piles up in its own buffers.
        client = await self.connect(max_queue=1, max_size=2**20)
        try:
            await client.wait_closed()
        finally:
            await client.close()


class Rapid(Client):
    """Connects, takes the snapshot, goes away, again."""

    async def _once(self) -> None:
        client = await self.connect()
        try:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.recv(), timeout=10)
        finally:
            await client.close()
