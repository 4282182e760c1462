"""Channels layer probe: a message sent to the probe's own channel comes back.

Each event loop keeps one probe channel per layer and reuses it: channels_redis's pub/sub layer
subscribes a new channel in Redis and keeps the subscription until a receive is cancelled, so a
fresh channel per run would leak one subscription per check run.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref

from channels.layers import get_channel_layer

from connections_app.errors import ErrorCategory
from connections_app.probes.result import ProbeResult
from connections_app.probes.timing import Stopwatch


class _ProbeChannel:
    def __init__(self) -> None:
        self.name: str | None = None
        self.lock = asyncio.Lock()


# Per event loop (a channel and a lock belong to the loop that made them), per layer alias.
_channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _ProbeChannel]] = (
    weakref.WeakKeyDictionary()
)


def _probe_channel(alias: str) -> _ProbeChannel:
    per_loop = _channels.setdefault(asyncio.get_running_loop(), {})
    return per_loop.setdefault(alias, _ProbeChannel())


async def probe_channel_layer(check, manager=None) -> ProbeResult:
    layer = get_channel_layer(check.target)
    if layer is None:
        return ProbeResult.failure(ErrorCategory.UNKNOWN, f"no channel layer {check.target!r}")
    probe = _probe_channel(check.target)
    # One probe at a time per channel, so a reply is never taken by another run's receive.
    async with probe.lock:
        clock = Stopwatch()
        if probe.name is None:
            probe.name = await layer.new_channel("health.")
        token = uuid.uuid4().hex
        await layer.send(probe.name, {"type": "health.ping", "token": token})
        for _ in range(8):  # a reply left over from a run cut short by its timeout is skipped
            message = await layer.receive(probe.name)
            if message.get("token") == token:
                return ProbeResult.success(clock.ms())
    return ProbeResult.failure(ErrorCategory.UNKNOWN, "the layer returned other messages")
