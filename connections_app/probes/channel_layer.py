"""Channels layer probe: a message sent to a fresh channel comes back."""

from __future__ import annotations

import uuid

from channels.layers import get_channel_layer

from connections_app.errors import ErrorCategory
from connections_app.probes.result import ProbeResult
from connections_app.probes.timing import Stopwatch


async def probe_channel_layer(check, manager=None) -> ProbeResult:
    layer = get_channel_layer(check.target)
    if layer is None:
        return ProbeResult.failure(ErrorCategory.UNKNOWN, f"no channel layer {check.target!r}")
    clock = Stopwatch()
    channel = await layer.new_channel("health.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "health.ping", "token": token})
    message = await layer.receive(channel)
    if message.get("token") != token:
        return ProbeResult.failure(ErrorCategory.UNKNOWN, "the layer returned another message")
    return ProbeResult.success(clock.ms())
