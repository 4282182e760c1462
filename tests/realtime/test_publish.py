"""publish_event: never raises, returns quickly, and reaches clients from any thread."""

import asyncio
import logging
import threading

import pytest
from asgiref.sync import sync_to_async

from project.config import channel_layers
from realtime import publish
from realtime.publish import publish_event, publish_event_sync
from tests.conftest import refusing_port
from tests.realtime.conftest import connected, receive
from tests.realtime.helpers import events_of
from tests.realtime.servers import HOST

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("clean_hub")]


async def test_it_never_raises_when_redis_refuses(settings, caplog):
    settings.CHANNEL_LAYERS = channel_layers(f"redis://{HOST}:{refusing_port()}/0", "pubsub")
    with caplog.at_level(logging.INFO, logger="connections_app.error_handler"):
        await publish_event("check.status", {"name": "db"})
        await publish_event("check.status", {"name": "db"})
    assert (publish.stats.failed, publish.stats.skipped) == (1, 1)  # then a cool-down
    lines = [r for r in caplog.records if "ws.publish" in r.getMessage()]
    assert len(lines) == 1


async def test_it_returns_within_its_timeout_when_redis_never_answers(settings):
    async def silent(reader, writer):
        await reader.read()  # accept, read, never answer
        writer.close()

    server = await asyncio.start_server(silent, HOST, 0)
    port = server.sockets[0].getsockname()[1]
    settings.CHANNEL_LAYERS = channel_layers(f"redis://{HOST}:{port}/0", "core")
    try:
        async with asyncio.timeout(publish.PUBLISH_TIMEOUT + 2):
            await publish_event("check.status", {"name": "db"})
    finally:
        server.close()
        await server.wait_closed()
    assert publish.stats.failed == 1


async def test_data_that_is_not_json_is_counted_not_raised():
    await publish_event("check.status", {"name": object()})  # sent as its str()
    await publish_event("check.status", {"latency_ms": float("nan")})  # sent as null
    await publish_event("check.status", {1j: "a key JSON cannot have"})
    assert (publish.stats.published, publish.stats.failed) == (2, 1)


async def test_the_sync_wrapper_reaches_clients_from_a_request_thread(staff_cookie):
    socket, _ = await connected(staff_cookie)
    await sync_to_async(publish_event_sync)("check.status", {"name": "db"})
    assert (await receive(socket))["data"]["statuses"] == [{"name": "db"}]
    await socket.disconnect()


async def test_the_sync_wrapper_reaches_clients_from_a_plain_thread(staff_cookie):
    # A thread with no link to the server's loop: the in-memory layer's queues must be
    # touched only from the loop that owns them, so the message is handed over.
    socket, _ = await connected(staff_cookie)
    thread = threading.Thread(target=publish_event_sync, args=("check.status", {"name": "db"}))
    thread.start()
    await asyncio.to_thread(thread.join, 5)
    assert (await receive(socket))["data"]["statuses"] == [{"name": "db"}]
    await socket.disconnect()


@pytest.mark.redis
async def test_it_reaches_clients_through_redis(staff_cookie, settings, redis_url):
    settings.CHANNEL_LAYERS = channel_layers(redis_url, "pubsub")
    socket, _ = await connected(staff_cookie)
    await publish_event("check.status", {"name": "via-redis"})
    for _ in range(20):  # other test runs may share this Redis: skip their frames
        frame = await receive(socket)
        if ("check.status", {"name": "via-redis"}) in events_of(frame):
            break
    else:
        raise AssertionError("the event did not arrive")
    await socket.disconnect()


def test_redis_hanging_up_is_a_reset_and_its_timeout_a_timeout():
    # Without these the error handler logs an outage as "unknown", traceback and all.
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from connections_app.errors import ErrorCategory, classify

    assert classify(RedisConnectionError("Connection closed by server.")) is ErrorCategory.RESET
    assert classify(RedisTimeoutError("Timeout reading from socket")) is ErrorCategory.TIMEOUT
