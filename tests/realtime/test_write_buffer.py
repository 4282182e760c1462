"""A client that never reads cannot grow daphne without bound, however well it acks.

Real daphne, real sockets: the stuck clients do not read (a tiny receive buffer, nothing
taken from it), and the ack limits are off in daphne (``flood_settings``), as for a client
that acks every frame it was sent without reading one. Events of 64 KB come through Redis.
The write-buffer bound (``Limits.max_buffered_bytes``, realtime/transport.py) makes their
senders wait, and the sender's timeouts drop them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid

import pytest

from project.config import channel_layers
from realtime.publish import publish_event
from tests.realtime import servers

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]

STUCK = 10
EVENTS = 150
PAD = 64 * 1024
MIB = 1024 * 1024


@pytest.fixture
def flood(sqlite_file_env, redis_url, settings) -> tuple[dict[str, str], str]:
    settings.CHANNEL_LAYERS = channel_layers(redis_url, "pubsub")
    env = sqlite_file_env | {
        "LOG_LEVEL": "WARNING",
        "REDIS_URL": redis_url,
        "CHANNEL_LAYER_KIND": "pubsub",
        "DJANGO_SETTINGS_MODULE": "tests.realtime.flood_settings",
    }
    return env, servers.staff_session(env)


async def stuck_client(port: int, cookie: str):
    """A client that reads its snapshot, then nothing: its kernel buffer is kept small so what
    it does not read stays in the server."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((servers.HOST, port))
    client = await servers.ws_connect(port, cookie, sock=sock, max_queue=1)
    assert json.loads(await client.recv())["type"] == "snapshot"
    return client


async def clients_left(port: int, cookie: str) -> int:
    probe = await servers.ws_connect(port, cookie)
    try:
        return json.loads(await probe.recv())["data"]["server"]["clients"] - 1
    finally:
        await probe.close()


async def test_clients_that_never_read_are_dropped_and_daphne_stays_small(flood, tmp_path):
    env, cookie = flood
    with servers.daphne(env, tmp_path / "daphne.log") as (port, pid):
        stuck = [await stuck_client(port, cookie) for _ in range(STUCK)]
        before = servers.rss_kib(pid)
        marker = uuid.uuid4().hex
        for i in range(EVENTS):
            await publish_event("check.status", {"name": marker, "i": i, "pad": "x" * PAD})
        # Unbounded, each stuck socket would hold EVENTS * PAD (9.4 MB) less what the kernel
        # takes (measured: daphne grew 109 MB, no client dropped); bounded, 256 KB each
        # (measured: 12.5 MB, of which 9.4 MB are the events themselves). The senders wait
        # 5 s, retry 2 s, then drop the client.
        for _ in range(100):
            if await clients_left(port, cookie) == 0:
                break
            await asyncio.sleep(0.2)
        grown = (servers.rss_kib(pid) - before) / 1024
        print(f"daphne grew {grown:.1f} MB with {STUCK} stuck clients")  # docs/BENCHMARKS.md
        assert await clients_left(port, cookie) == 0
        for client in stuck:
            client.transport.abort()
    # The bodies themselves (150 x 64 KB, shared by all clients) and the allocator's slack
    # remain; the 10 stuck sockets' copies of them do not.
    assert grown < STUCK * EVENTS * PAD / MIB / 2, f"daphne grew {grown:.0f} MB"
