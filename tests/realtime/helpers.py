"""Small helpers for the realtime tests: a stand-in socket and bounded waits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import replace

from connections_app.retry import RetryPolicy
from realtime.broadcast import Delivery
from realtime.client import Client
from realtime.limits import Limits
from realtime.protocol import encode_event

#: The WEBSOCKET delivery's shape with short timeouts, so a hanging send ends quickly.
FAST = Delivery(
    policy=RetryPolicy(attempts=1, base_delay=0.01, factor=1.0, cap=0.01), timeouts=(0.2, 0.1)
)
HANG = "hang"


class Socket:
    """The consumer's side of a client: records frames and the close; can fail or hang.

    ``failures`` are used one per send of an event: an exception is raised, ``HANG`` never
    returns. The snapshot every client starts with is sent but neither failed nor recorded.
    """

    def __init__(self, *failures: BaseException | str) -> None:
        self.frames: list[dict] = []
        self.closed: tuple[int, str] | None = None
        self._failures = list(failures)

    async def send(self, text: str) -> None:
        if '"type":"snapshot"' in text:
            return
        if self._failures:
            failure = self._failures.pop(0)
            if failure == HANG:
                await asyncio.Event().wait()
            raise failure
        self.frames.append(json.loads(text))

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


def make_client(socket: Socket, **limits) -> Client:
    """A client past its first snapshot, as the hub leaves it after ``join``."""
    client = Client("staff", socket.send, socket.close, replace(Limits(), **limits))
    client.outbox.release(encode_event("snapshot", {}))
    return client


async def wait_until(condition: Callable[[], bool], within: float = 5.0) -> None:
    """Return as soon as ``condition()`` holds; fail after about ``within`` seconds."""
    step = 0.005
    for _ in range(int(within / step)):
        if condition():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"still false after {within} s")


def events_of(frame: dict) -> list[tuple[str, dict]]:
    """The events a frame carries, as ``(type, data)``: an ``updates`` frame's results as
    ``check.result`` and its status changes as ``check.status``, in order; any other frame is
    one event of its own type."""
    if frame["type"] != "updates":
        return [(frame["type"], frame.get("data"))]
    data = frame["data"]
    return [("check.result", r) for r in data["results"]] + [
        ("check.status", s) for s in data["statuses"]
    ]
