"""End to end: real daphne processes on loopback ports, real WebSocket clients (websockets).

Events reach a daphne process from this test process through Redis (the in-memory layer
cannot cross processes). Another test run may share that Redis, so readers skip frames that do
not carry this test's marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import websockets

from project.config import channel_layers
from realtime.publish import publish_event
from tests.realtime import servers
from tests.realtime.helpers import events_of

pytestmark = pytest.mark.django_db(transaction=True)

TIMEOUT = 20
#: Frames a reader may skip while looking for the one it waits for.
MAX_FRAMES = 1000


@pytest.fixture
def dashboard(sqlite_file_env) -> tuple[dict[str, str], str]:
    """Environment for daphne on a fresh migrated SQLite file, and a staff session there."""
    env = sqlite_file_env | {"LOG_LEVEL": "WARNING"}
    return env, servers.staff_session(env)


@pytest.fixture
def with_redis(dashboard, redis_url, settings) -> tuple[dict[str, str], str]:
    """The same, with the Redis layer in daphne and in this process (the publisher)."""
    settings.CHANNEL_LAYERS = channel_layers(redis_url, "pubsub")
    env, cookie = dashboard
    return env | {"REDIS_URL": redis_url, "CHANNEL_LAYER_KIND": "pubsub"}, cookie


async def open_clients(port: int, cookie: str, count: int, **options) -> list:
    """``count`` staff clients, each past its snapshot. They buffer whatever they do not read
    (``max_queue=None``), so closing never waits for a close frame stuck behind events."""
    options.setdefault("max_queue", None)
    limit = asyncio.Semaphore(50)

    async def open_one():
        async with limit:
            client = await servers.ws_connect(port, cookie, **options)
            await next_frame(client, "snapshot")
            return client

    return await asyncio.gather(*(open_one() for _ in range(count)))


async def next_frame(client, kind: str, marker: str | None = None) -> dict:
    """The next frame of type ``kind`` (whose data's name is ``marker``, if given)."""
    async with asyncio.timeout(TIMEOUT):
        for _ in range(MAX_FRAMES):
            frame = json.loads(await client.recv())
            for event, data in events_of(frame):
                if event == kind and (marker is None or data.get("name") == marker):
                    return frame | {"type": event, "data": data}
    raise AssertionError(f"no {kind} frame among {MAX_FRAMES}")


async def server_state(port: int, cookie: str) -> dict:
    """What the server says about itself in a fresh snapshot (this probe included)."""
    probe = await servers.ws_connect(port, cookie)
    try:
        return (await next_frame(probe, "snapshot"))["data"]["server"]
    finally:
        await probe.close()


async def close_all(clients: list) -> None:
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


@pytest.mark.redis
@pytest.mark.slow
async def test_200_clients_each_receive_an_event(with_redis, tmp_path):
    env, cookie = with_redis
    with servers.daphne(env, tmp_path / "daphne.log") as (port, _):
        clients = await open_clients(port, cookie, 200)
        marker = uuid.uuid4().hex
        await publish_event("check.status", {"name": marker, "from": "up", "to": "down"})
        frames = await asyncio.gather(*(next_frame(c, "check.status", marker) for c in clients))
        assert len(frames) == 200 and all(f["data"]["to"] == "down" for f in frames)
        await close_all(clients)


@pytest.mark.redis
@pytest.mark.slow
async def test_a_client_that_stops_reading_is_closed_and_delays_nobody(with_redis, tmp_path):
    env, cookie = with_redis
    events = 250  # past the 200 unacknowledged frames a client may be behind
    with servers.daphne(env, tmp_path / "daphne.log") as (port, _):
        healthy = await open_clients(port, cookie, 20)
        (stuck,) = await open_clients(port, cookie, 1, max_queue=1, close_timeout=1)
        marker = uuid.uuid4().hex

        async def read_all(client) -> int:
            seen = acked = 0
            while seen < events:
                frame = await next_frame(client, "test.tick", marker)
                seen += 1
                if frame["seq"] - acked >= 50:
                    acked = frame["seq"]
                    await client.send(json.dumps({"type": "ack", "seq": acked}))
            return seen

        readers = asyncio.gather(*(read_all(c) for c in healthy))
        for i in range(events):
            # Not coalesced (unlike check events): one frame each, to pass the ack limits.
            await publish_event("test.tick", {"name": marker, "i": i})
        # Every healthy client gets every event while the stuck one has not read a thing.
        assert await readers == [events] * 20
        # Frames younger than the ack grace (2 s) do not count: a trickle of events after the
        # burst lets the server see the stuck client as behind, and close it.
        for _ in range(100):
            await publish_event("test.tick", {"name": "trickle"})
            if (await server_state(port, cookie))["clients"] == 21:  # 20 healthy + the probe
                break
            await asyncio.sleep(0.1)
        assert (await server_state(port, cookie))["clients"] == 21
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                for _ in range(MAX_FRAMES):
                    await stuck.recv()
        await close_all(healthy)


@pytest.mark.slow
async def test_500_rapid_connects_and_disconnects_leave_no_client_and_no_task(dashboard, tmp_path):
    env, cookie = dashboard
    with servers.daphne(env, tmp_path / "daphne.log") as (port, _):
        before = await server_state(port, cookie)

        async def cycle(i: int) -> None:
            client = await servers.ws_connect(port, cookie)
            if i % 3 == 0:
                await client.recv()  # some read their snapshot first
            if i % 3 == 2:
                client.transport.abort()  # some vanish without a close handshake
            else:
                await client.close()

        for batch in range(20):
            await asyncio.gather(*(cycle(batch * 25 + i) for i in range(25)))
        # daphne reaps finished connections once a second: wait for it, boundedly.
        for _ in range(50):
            after = await server_state(port, cookie)
            if after["clients"] == 1 and after["tasks"] <= before["tasks"]:
                break
            await asyncio.sleep(0.2)
        assert after["clients"] == 1, after
        assert after["tasks"] <= before["tasks"], (before, after)


@pytest.mark.redis
@pytest.mark.slow
async def test_clients_reconnect_and_resync_after_every_connection_is_cut(with_redis, tmp_path):
    env, cookie = with_redis
    with servers.daphne(env, tmp_path / "daphne.log") as (port, _):
        async with servers.CuttingProxy(port) as proxy:
            clients = await open_clients(proxy.port, cookie, 10)
            await proxy.cut()
            for client in clients:
                with pytest.raises(websockets.ConnectionClosed):
                    async with asyncio.timeout(TIMEOUT):
                        await client.recv()
            # What the page does on a lost connection: reconnect and start from a snapshot.
            clients = await open_clients(proxy.port, cookie, 10)
            marker = uuid.uuid4().hex
            await publish_event("check.status", {"name": marker})
            await asyncio.gather(*(next_frame(c, "check.status", marker) for c in clients))
            for _ in range(50):  # the cut connections leave the registry as daphne notices
                state = await server_state(port, cookie)
                if state["clients"] == 11:
                    break
                await asyncio.sleep(0.2)
            assert state["clients"] == 11
            await close_all(clients)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server and redis-cli")
async def test_after_a_redis_restart_events_flow_again_and_clients_resync(
    dashboard, settings, tmp_path
):
    env, cookie = dashboard
    port = servers.free_port()  # a private Redis: this test stops it
    url = f"redis://{servers.HOST}:{port}/0"
    settings.CHANNEL_LAYERS = channel_layers(url, "pubsub")
    env = env | {"REDIS_URL": url, "CHANNEL_LAYER_KIND": "pubsub"}
    log = tmp_path / "redis.log"
    with servers.redis_server(log, port), servers.daphne(env, tmp_path / "daphne.log") as (web, _):
        clients = await open_clients(web, cookie, 2)
        frames: list[list[dict]] = [[], []]
        readers = [
            asyncio.ensure_future(collect(c, f)) for c, f in zip(clients, frames, strict=True)
        ]
        stop = ["redis-cli", "-p", str(port), "shutdown", "nosave"]
        await asyncio.to_thread(subprocess.run, stop, check=True, timeout=10)
        await publish_event("check.status", {"name": "lost"})  # fails, and must not raise

        def recovered(got: list[dict]) -> bool:
            # Live events again, and a snapshot that repairs what was lost meanwhile.
            return any("after" in names(f) for f in got) and any(
                f["type"] == "snapshot" for f in got
            )

        with servers.redis_server(log, port):
            for _ in range(100):  # the server's subscriber reconnects within about a second
                await publish_event("check.status", {"name": "after"})
                if all(recovered(got) for got in frames):
                    break
                await asyncio.sleep(0.1)
            assert all(recovered(got) for got in frames)
            for reader in readers:
                reader.cancel()
            await close_all(clients)


async def collect(client, frames: list) -> None:
    for _ in range(10_000):
        frames.append(json.loads(await client.recv()))


def names(frame: dict) -> set[str]:
    return {data.get("name") for kind, data in events_of(frame) if kind == "check.status"}


@pytest.fixture
def postgres_env(postgres_url, sqlite_file_env) -> Iterator[dict[str, str]]:
    """Environment for a child process on a private, migrated PostgreSQL database."""
    import psycopg
    from psycopg import sql

    database = f"ch_realtime_{os.getpid()}"
    name = sql.Identifier(database)

    def admin(statement: sql.Composed) -> None:
        with psycopg.connect(postgres_url, autocommit=True) as connection:
            connection.execute(statement)

    admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
    admin(sql.SQL("CREATE DATABASE {}").format(name))
    url = urlsplit(postgres_url)._replace(path=f"/{database}").geturl()
    env = sqlite_file_env | {"DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=servers.REPO, env=env, check=True, timeout=120)
    yield env
    admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@pytest.mark.postgres
@pytest.mark.slow
async def test_on_postgresql_a_snapshot_has_recent_results_and_uptime(postgres_env, tmp_path):
    code = (
        "import django; django.setup()\n"
        "from datetime import timedelta\n"
        "from django.utils import timezone\n"
        "from connections_app.models import CheckResult, HealthCheck\n"
        "check = HealthCheck.objects.create(name='pg', kind='tcp', target='127.0.0.1:5432')\n"
        "now = timezone.now()\n"
        "CheckResult.objects.bulk_create(CheckResult(health_check=check, ok=i % 2 == 0,\n"
        "    checked_at=now - timedelta(minutes=i), latency_ms=i) for i in range(40))\n"
        "from connections_app.state import rebuild_from_results; rebuild_from_results()\n"
        "from connections_app.rollups import rebuild; rebuild()\n"  # bulk: rollups too
    )
    setup = postgres_env | {"DJANGO_SETTINGS_MODULE": "project.settings"}
    options = {"cwd": servers.REPO, "env": setup, "check": True, "timeout": 60}
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], **options)
    cookie = servers.staff_session(postgres_env)
    with servers.daphne(postgres_env, tmp_path / "daphne.log") as (port, _):
        client = await servers.ws_connect(port, cookie)
        snapshot = await next_frame(client, "snapshot")
        (check,) = [c for c in snapshot["data"]["checks"] if c["name"] == "pg"]
        assert len(check["recent"]) == 30 and check["uptime_24h"] == 0.5
        assert check["recent"][-1][1:] == [1, 0.0]  # [time, ok, latency], newest last
        await client.close()


@pytest.mark.slow
async def test_embedded_serve_pushes_its_own_check_results(dashboard, tmp_path):
    """The default set-up: in-memory layer, checks run inside the server process."""
    env, cookie = dashboard
    async with loopback_target() as address:
        name = await create_tcp_check(env, address, interval=1)
        port = servers.free_port()
        serve = [sys.executable, "manage.py", "serve", "--host", servers.HOST, "--port", str(port)]
        with servers.process(serve, env, port, tmp_path / "serve.log"):
            (client,) = await open_clients(port, cookie, 1)
            frame = await next_check_result(client, name)
            assert frame["data"]["result"]["ok"] is True
            await client.close()


@pytest.mark.redis
@pytest.mark.slow
async def test_an_event_from_runchecks_reaches_clients_of_two_daphne_processes(
    with_redis, tmp_path
):
    env, cookie = with_redis
    async with loopback_target() as address:
        name = await create_tcp_check(env, address)
        with (
            servers.daphne(env, tmp_path / "a.log") as (port_a, _),
            servers.daphne(env, tmp_path / "b.log") as (port_b, _),
        ):
            clients = await open_clients(port_a, cookie, 3) + await open_clients(port_b, cookie, 3)
            runchecks = [sys.executable, "manage.py", "runchecks", "--once", "--check", name]
            done = await asyncio.to_thread(
                subprocess.run,
                runchecks,
                cwd=servers.REPO,
                env=env,
                capture_output=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            frames = await asyncio.gather(*(next_check_result(c, name) for c in clients))
            assert all(f["data"]["check"]["status"] == "up" for f in frames)
            await close_all(clients)


@contextlib.asynccontextmanager
async def loopback_target():
    """A TCP server on 127.0.0.1 for a check to reach; yields its host:port."""
    server = await asyncio.start_server(lambda reader, writer: writer.close(), servers.HOST, 0)
    try:
        yield f"{servers.HOST}:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


async def create_tcp_check(env: dict[str, str], address: str, interval: float = 30) -> str:
    """A TCP check in the database of ``env``; returns its (unique) name."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    code = (
        "import django; django.setup()\n"
        "from connections_app.models import HealthCheck\n"
        f"HealthCheck.objects.create(name={name!r}, kind='tcp', target={address!r}, "
        f"interval={interval}, timeout=0.5)\n"
    )
    setup = env | {"DJANGO_SETTINGS_MODULE": "project.settings", "REDIS_URL": ""}
    options = {"cwd": servers.REPO, "env": setup, "check": True, "timeout": 60}
    await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], **options)
    return name


async def next_check_result(client, name: str) -> dict:
    async with asyncio.timeout(TIMEOUT):
        for _ in range(MAX_FRAMES):
            frame = json.loads(await client.recv())
            for kind, data in events_of(frame):
                if kind == "check.result" and data["check"]["name"] == name:
                    return frame | {"type": kind, "data": data}
    raise AssertionError(f"no check.result for {name}")
