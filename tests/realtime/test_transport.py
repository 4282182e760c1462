"""The write-buffer reader's and the frame writer's edges, without a server: what they find
behind a ``send``, how a sender waits, what the writer writes. Real daphne is in
test_write_buffer.py and test_frame_writer.py."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from realtime.transport import (
    EXTENSION,
    WRITER,
    SocketClosed,
    WriteBufferMiddleware,
    buffer_reader,
    frame_header,
    frame_writer,
    wait_for_room,
)
from tests.realtime.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]


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


class Writable:
    """The parts of an autobahn protocol daphne made that the frame writer reads and calls."""

    STATE_OPEN, STATE_CLOSING, SEND_STATE_GROUND = 3, 2, 0
    dataBuffer, offset, _tempDataLen = b"", 0, 0  # as its transport, for the reader

    def __init__(self, buffered: int = 0) -> None:
        self.state = self.STATE_OPEN
        self.send_state = self.SEND_STATE_GROUND
        self.send_queue: list = []
        self._perMessageCompress = None
        self.maskServerFrames = False
        self.maxMessagePayloadSize = 1024 * 1024
        self.buffered = buffered
        self.written: list[bytes] = []  # what reached the transport, piece by piece
        self.messages: list[bytes] = []  # what went through autobahn's sendMessage
        self.transport = self

    def writeSequence(self, pieces) -> None:
        self.written.extend(pieces)

    def sendMessage(self, payload: bytes, is_binary: bool) -> None:
        assert not is_binary
        self.messages.append(payload)


def test_a_protocol_the_writer_was_not_written_for_gets_no_writer():
    protocol = Writable()
    del protocol.send_queue  # an autobahn that renamed what the writer reads
    assert frame_writer(protocol, lambda: 0) is None


#: Run in a child: building daphne's protocol installs Twisted's reactor.
SAME_BYTES = """
import json
from twisted.internet.testing import StringTransport
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol
from realtime.transport import frame_writer

def protocol():
    made = WebSocketProtocol()
    made.factory = WebSocketFactory(object(), server="test")
    made.makeConnection(StringTransport())
    made.state = made.STATE_OPEN  # past the handshake
    made.transport.clear()
    return made

same = []
for size in (5, 200, 70_000):
    parts = (b'{"v":2,"seq":3,', ('"t":"' + "é€😀" * size + '"}').encode())
    ours, autobahns = protocol(), protocol()
    written = frame_writer(ours, lambda: 0)(parts, 4096)
    autobahns.sendMessage(b"".join(parts), False)
    same.append(written and ours.transport.value() == autobahns.transport.value())
print(json.dumps(same))
"""


def test_on_daphnes_own_protocol_the_writer_writes_the_bytes_autobahn_would():
    done = subprocess.run(
        [sys.executable, "-c", SAME_BYTES],
        cwd=ROOT,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [True, True, True]  # 7-, 16- and 64-bit lengths


def write(protocol: Writable, parts: tuple[bytes, ...], limit: int = 4096) -> bool:
    return frame_writer(protocol, lambda: protocol.buffered)(parts, limit)


def test_the_writer_hands_twisted_the_header_and_the_parts_unjoined():
    protocol, shared = Writable(), b'"type":"updates","data":{}}'
    assert write(protocol, (b'{"v":2,"seq":7,', shared))
    header, prefix, rest = protocol.written
    assert header == frame_header(len(prefix) + len(shared)) and rest is shared
    assert protocol.messages == []


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_a_frame_header_is_rfc_6455s_for_a_servers_text_message(length, header):
    assert frame_header(length) == header


def test_the_writer_declines_while_the_socket_holds_more_than_the_limit():
    protocol = Writable(buffered=4097)
    assert not write(protocol, (b"{", b"}"))
    assert protocol.written == protocol.messages == []
    protocol.buffered = 4096
    assert write(protocol, (b"{", b"}"))


@pytest.mark.parametrize("state", [Writable.STATE_CLOSING, 0])
def test_a_write_to_a_closing_socket_raises_socket_closed(state):
    protocol = Writable(buffered=10**9)  # gone is gone, whatever it still holds
    protocol.state = state
    with pytest.raises(SocketClosed):
        write(protocol, (b"{", b"}"))


@pytest.mark.parametrize(
    "busy",
    [
        {"_perMessageCompress": object()},
        {"send_queue": [(b"x", False)]},
        {"send_state": 2},
        {"maskServerFrames": True},
        {"maxMessagePayloadSize": 3},
    ],
    ids=["compression", "send-queue", "streaming", "masking", "too-large"],
)
def test_what_autobahn_must_frame_itself_goes_through_its_send_message(busy):
    protocol = Writable()
    vars(protocol).update(busy)
    assert write(protocol, (b'{"a":', b"1}"))
    assert protocol.messages == [b'{"a":1}'] and protocol.written == []


async def test_the_middleware_puts_a_writer_in_the_scope_only_under_daphne():
    seen = []

    async def app(scope, receive, send) -> None:
        seen.append(scope.get("extensions", {}))

    middleware = WriteBufferMiddleware(app)
    for protocol in (Writable(), Protocol()):
        await middleware(
            {"type": "websocket"}, None, functools.partial(Server().handle_reply, protocol)
        )
    await middleware({"type": "websocket"}, None, lambda message: None)
    assert callable(seen[0][WRITER])
    assert EXTENSION in seen[1] and WRITER not in seen[1]  # not the autobahn it knows
    assert seen[2] == {}
