"""One client's outbox: the frames waiting for its socket, in order, bounded."""

from __future__ import annotations

import asyncio
from collections import deque
from enum import Enum

from channels.exceptions import ChannelFull


class OutboxFull(ChannelFull):
    """A client's outbox stayed full (the classifier files it under channel_full)."""


class Offer(Enum):
    QUEUED = "queued"
    #: Past the capacity: kept in order, but the client must catch up (one retry).
    LATE = "late"
    #: At twice the capacity, or closed: not kept.
    REFUSED = "refused"


class Outbox:
    """Frames for one socket, taken by one sender task.

    ``hold()`` marks where a snapshot will go while it is built: frames offered before the
    hold are still sent, frames offered during the build wait, and ``release(snapshot)`` puts
    the snapshot at the mark. So an event the snapshot may have missed never goes before it
    (the snapshot would hide it); an event after a snapshot may repeat what it shows.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._frames: deque[str] = deque()
        self._hold_at: int | None = None
        self._closed = False
        self._readable = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, frame: str) -> Offer:
        if self._closed or len(self._frames) >= 2 * self.capacity:
            return Offer.REFUSED
        self._frames.append(frame)
        self._changed()
        return Offer.QUEUED if len(self._frames) <= self.capacity else Offer.LATE

    def hold(self) -> None:
        """Mark where the next snapshot goes; a hold already in place keeps its mark."""
        if self._hold_at is None:
            self._hold_at = len(self._frames)
            self._changed()

    def release(self, first: str, *more: str) -> None:
        """End the hold, with ``first`` (the snapshot) and ``more`` (its parts) at the place
        where it began, in order."""
        at = len(self._frames) if self._hold_at is None else self._hold_at
        self._hold_at = None
        if not self._closed:
            for offset, frame in enumerate((first, *more)):
                self._frames.insert(at + offset, frame)
        self._changed()

    def close(self) -> None:
        self._closed = True
        self._frames.clear()
        self._changed()

    async def get(self) -> str | None:
        """The next frame to send, waiting while there is none; None once closed."""
        while True:
            await self._readable.wait()
            if self._closed:
                return None
            if self._sendable():
                frame = self._frames.popleft()
                if self._hold_at is not None:
                    self._hold_at -= 1
                self._changed()
                return frame

    async def wait_for_room(self) -> None:
        """Return once the outbox is back within its capacity."""
        await self._room.wait()

    def _sendable(self) -> bool:
        """Frames before the hold point may go out while a snapshot is being built."""
        return bool(self._frames) and (self._hold_at is None or self._hold_at > 0)

    def _changed(self) -> None:
        if self._sendable() or self._closed:
            self._readable.set()
        else:
            self._readable.clear()
        if len(self._frames) <= self.capacity:
            self._room.set()
        else:
            self._room.clear()
