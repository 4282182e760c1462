"""One connected browser as the server process sees it: outbox, sequence, acks, counters."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable

from django.utils import timezone

from realtime.limits import Limits
from realtime.outbox import Outbox
from realtime.protocol import EVERY, Watch, frame_parts, shown
from realtime.transport import WriteNow

SendText = Callable[[str], Awaitable[None]]
Close = Callable[[int, str], Awaitable[None]]


class MinInterval:
    """Lets one request through per ``seconds`` (the first one always)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._last = float("-inf")

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.seconds:
            return False
        self._last = now
        return True


class ClientGone(ConnectionResetError):
    """A send to a socket that is already closed (the classifier files it under reset)."""


class Client:
    """A dashboard connection. ``send`` writes one text frame to its socket, ``close`` closes
    the socket with a code and a reason; both come from the consumer, and so does ``write``
    when the server lets frames be written straight to the socket (daphne:
    ``transport.WRITER``)."""

    def __init__(
        self,
        user: str,
        send: SendText,
        close: Close,
        limits: Limits,
        session_key: str | None = None,
        watch: Watch = EVERY,
        write: WriteNow | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.user = user
        #: The session the socket opened with: judged again at every heartbeat (``access``).
        self.session_key = session_key
        self.connected_at = timezone.now()
        self.limits = limits
        self.outbox = Outbox(limits.outbox_capacity)
        self.outbox.hold()  # nothing goes out before the first snapshot
        self._send = send
        self._write = write
        self._close = close
        #: What it watches: the dashboard (a tag filter changes it) or one check's page.
        self.watch = watch
        self.seq = 0
        self.acked = 0
        self._unacked: deque[tuple[int, float]] = deque()
        self.delivered = 0
        self.retries = 0
        self.closed_reason: str | None = None
        self.tasks: set[asyncio.Task] = set()
        self.catching_up: asyncio.Task | None = None
        self.refresh_lock = asyncio.Lock()
        self.snapshot_requests = MinInterval(limits.snapshot_min_interval)
        self.pings = MinInterval(limits.ping_min_interval)
        self._bad_frames: deque[float] = deque()
        self._on_shutdown: list[Callable[[Client], object]] = []

    def __repr__(self) -> str:
        return f"<Client {self.id} {self.user}>"

    async def send(self, text: str) -> None:
        """Write one text frame to the socket."""
        try:
            await self._send(text)
        except RuntimeError as exc:
            # The ASGI server refuses a send after the socket closed: the client is gone,
            # which no retry fixes (not a bug of ours to trace back).
            raise ClientGone(str(exc)) from exc

    def write_now(self, seq: int, body: str) -> bool:
        """Write frame ``seq`` of ``body`` at once if the socket takes it without waiting; False
        when it cannot (no writer, or the socket's buffer is over ``max_buffered_bytes``): then
        ``send`` the frame, which waits for room."""
        if self._write is None:
            return False
        # A socket already closing raises transport.SocketClosed: gone, like ClientGone.
        return self._write(frame_parts(seq, body), self.limits.max_buffered_bytes)

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def wants(
        self, check: int | None = None, tags: frozenset[str] | None = None, event: str = ""
    ) -> bool:
        """Whether a frame about ``check`` (with ``tags``; both None: about no check, of type
        ``event``) reaches this client (``protocol.shown``)."""
        return shown(self.watch, check, tags, event)

    def next_seq(self) -> int:
        self.seq += 1
        self._unacked.append((self.seq, time.monotonic()))
        return self.seq

    def ack(self, seq: int) -> bool:
        """Record an ack; False when it names a frame never sent."""
        if seq > self.seq:
            return False
        self.acked = max(self.acked, seq)
        while self._unacked and self._unacked[0][0] <= self.acked:
            self._unacked.popleft()
        return True

    def lag(self) -> str | None:
        """Why this client is too far behind its acks to keep, or None.

        Measured against the newest frame sent, not the clock: a client that acks in batches
        and then sees no frame for a while is not behind, one that stops acking while frames
        keep coming is. Frames sent within ``ack_grace`` of the newest do not count: in a
        burst no ack can be back yet.
        """
        if not self._unacked:
            return None
        limits = self.limits
        newest = self._unacked[-1][1]
        # The ack of a frame sent just now cannot be back: judge the delay up to the last frame
        # older than the grace, so a burst's tail followed by a quiet minute is not "behind".
        cutoff = newest - limits.ack_grace
        oldest = self._unacked[0][1]
        if oldest <= cutoff:
            # From the newest back: stops within the recent burst, however long the queue.
            last_judged = next(at for _seq, at in reversed(self._unacked) if at <= cutoff)
            if last_judged - oldest > limits.max_ack_delay:
                return f"no ack for {limits.max_ack_delay:g} s of frames"
        if len(self._unacked) > limits.max_unacked:
            # Oldest first: the (max_unacked + 1)th oldest being old means that many are.
            if newest - self._unacked[limits.max_unacked][1] >= limits.ack_grace:
                return f"more than {limits.max_unacked} frames not acknowledged"
        return None

    def bad_frame(self, now: float | None = None) -> bool:
        """Count a bad frame; True when the client has now sent too many within the window."""
        now = time.monotonic() if now is None else now
        self._bad_frames.append(now)
        while self._bad_frames and now - self._bad_frames[0] > self.limits.bad_frame_window:
            self._bad_frames.popleft()
        return len(self._bad_frames) >= self.limits.bad_frames_allowed

    def start(self, coroutine: Awaitable[None]) -> asyncio.Task:
        """Run ``coroutine`` for this client; it is cancelled when the client closes."""
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def on_shutdown(self, callback: Callable[[Client], object]) -> None:
        """Call ``callback(client)`` first thing in ``shutdown`` (the registry forgets it)."""
        self._on_shutdown.append(callback)

    def shutdown(self, reason: str) -> bool:
        """Unregister and stop everything for this client; False when already done."""
        if self.closed:
            return False
        self.closed_reason = reason
        callbacks, self._on_shutdown = self._on_shutdown, []
        for callback in callbacks:
            callback(self)
        self.outbox.close()
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()
        return True

    async def close(self, code: int, reason: str) -> None:
        """``shutdown`` and close the socket with ``code``; once only."""
        if self.shutdown(reason):
            await self._close(code, reason)
