"""On real daphne: the close code for too many bad frames reaches the client (daphne refuses
codes outside 1000 and 3000-4999: it would close with 1011 and log a traceback), and the origin
check compares the port daphne actually serves."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets

from tests.realtime import servers

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 20
MAX_FRAMES = 100


@pytest.fixture
def dashboard(sqlite_file_env) -> tuple[dict[str, str], str]:
    """Environment for daphne on a fresh migrated SQLite file, and a staff session there."""
    env = sqlite_file_env | {"LOG_LEVEL": "WARNING"}
    return env, servers.staff_session(env)


async def close_code(client) -> int:
    """The code the server closed ``client`` with, reading past the frames before it."""
    async with asyncio.timeout(TIMEOUT):
        for _ in range(MAX_FRAMES):
            try:
                await client.recv()
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else closed.code
    raise AssertionError(f"still open after {MAX_FRAMES} frames")


async def test_too_many_bad_frames_close_with_4008_and_no_traceback(dashboard, tmp_path):
    env, cookie = dashboard
    log = tmp_path / "daphne.log"
    with servers.daphne(env, log) as (port, _):
        client = await servers.ws_connect(port, cookie)
        assert json.loads(await client.recv())["type"] == "snapshot"
        for _ in range(5):
            await client.send("not json")
        assert await close_code(client) == 4008

        # The server is still fine: another client connects and is served.
        other = await servers.ws_connect(port, cookie)
        assert json.loads(await other.recv())["type"] == "snapshot"
        await other.close()
    text = log.read_text()
    assert "Traceback" not in text and "invalid close code" not in text, text


async def test_an_origin_on_another_port_is_refused_by_the_served_site(dashboard, tmp_path):
    env, cookie = dashboard
    with servers.daphne(env, tmp_path / "daphne.log") as (port, _):
        elsewhere = websockets.Origin(f"http://{servers.HOST}:{servers.free_port()}")
        with pytest.raises(websockets.InvalidStatus) as refused:
            await servers.ws_connect(port, cookie, origin=elsewhere)
        assert refused.value.response.status_code == 403
        own = await servers.ws_connect(port, cookie)  # http://127.0.0.1:<port>
        assert json.loads(await own.recv())["type"] == "snapshot"
        await own.close()
