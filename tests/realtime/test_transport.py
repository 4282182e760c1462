"""The write-buffer reader's edges, without a server: what it finds behind a ``send`` and how
a sender waits. Real daphne is in test_write_buffer.py."""

from __future__ import annotations

import asyncio
import functools

from realtime.transport import EXTENSION, WriteBufferMiddleware, buffer_reader, wait_for_room
from tests.realtime.helpers import wait_until


class FakeTransport:
    """The three attributes of a Twisted TCP transport the reader reads."""

    dataBuffer = b"x" * 100
    offset = 40
    _tempDataLen = 5


class Server:  # a stand-in named as daphne's, defined in its module name
    async def handle_reply(self, protocol, message) -> None: ...


Server.__module__ = "daphne.server"


class Protocol:
    transport = FakeTransport()


def test_it_reads_the_unsent_bytes_behind_daphnes_send():
    reader = buffer_reader(functools.partial(Server().handle_reply, Protocol()))
    assert reader is not None and reader() == 100 - 40 + 5


def test_another_servers_send_has_no_reader():
    async def send(message) -> None: ...

    assert buffer_reader(send) is None
    assert buffer_reader(functools.partial(send)) is None

    class Other:
        async def handle_reply(self, protocol, message) -> None: ...

    assert buffer_reader(functools.partial(Other().handle_reply, Protocol())) is None

    class NoTransport:
        transport = object()

    assert buffer_reader(functools.partial(Server().handle_reply, NoTransport())) is None


async def test_the_middleware_puts_the_reader_in_the_scope_only_under_daphne():
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope.get("extensions", {}))

    middleware = WriteBufferMiddleware(app)
    await middleware(
        {"type": "websocket"}, None, functools.partial(Server().handle_reply, Protocol())
    )
    await middleware({"type": "websocket"}, None, lambda message: None)
    assert EXTENSION in seen[0] and seen[1] == {}


async def test_a_sender_waits_while_the_buffer_is_over_the_limit():
    buffered = [10_000]
    scope = {"extensions": {EXTENSION: lambda: buffered[0]}}
    waiting = asyncio.ensure_future(wait_for_room(scope, limit=4096))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    buffered[0] = 4096
    await wait_until(waiting.done, within=2)
    await wait_for_room({}, limit=0)  # no reader: never waits
