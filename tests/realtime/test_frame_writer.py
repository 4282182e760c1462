"""Frames written straight to daphne's socket (``transport.WRITER``) as a real client reads them.

Real daphne, a real WebSocket client (websockets checks every frame's header, length and UTF-8):
events whose frames need each of the three RFC 6455 length forms, with characters of 2, 3 and 4
UTF-8 bytes, arrive whole, each client numbering its own frames without a gap.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from project.config import channel_layers
from realtime.publish import publish_event
from tests.realtime import servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

TIMEOUT = 20
#: Text lengths whose frames take a 7-bit, a 16-bit and a 64-bit length (over 64 KiB).
SIZES = (10, 2_000, 70_000)
TEXT = "é€😀 "  # 2, 3 and 4 bytes in UTF-8: a length in characters would be wrong


@pytest.fixture
def served(sqlite_file_env, redis_url, settings) -> tuple[dict[str, str], str]:
    settings.CHANNEL_LAYERS = channel_layers(redis_url, "pubsub")
    env = sqlite_file_env | {
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": redis_url,
        "CHANNEL_LAYER_KIND": "pubsub",
    }
    return env, servers.staff_session(env)


async def frames_until(client, marker: str, count: int) -> list[dict]:
    """Every frame up to the ``count``-th that carries ``marker`` (frames of other tests that
    share the Redis are read too: they are numbered like the rest)."""
    frames, seen = [], 0
    async with asyncio.timeout(TIMEOUT):
        while seen < count:
            frame = json.loads(await client.recv())
            frames.append(frame)
            seen += frame["type"] == "frame.test" and frame["data"]["marker"] == marker
    return frames


async def test_frames_of_every_length_arrive_whole_and_numbered_per_connection(served, tmp_path):
    env, cookie = served
    marker = uuid.uuid4().hex
    with servers.daphne(env, tmp_path / "daphne.log") as (port, _pid):
        clients = [await servers.ws_connect(port, cookie, max_size=None) for _ in range(2)]
        try:
            for size in SIZES:
                text = (TEXT * size)[:size]
                await publish_event("frame.test", {"marker": marker, "text": text})
            for client in clients:
                frames = await frames_until(client, marker, len(SIZES))
                assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
                mine = [f["data"]["text"] for f in frames if f["type"] == "frame.test"]
                assert mine == [(TEXT * size)[:size] for size in SIZES]
        finally:
            await asyncio.gather(*(c.close() for c in clients))
