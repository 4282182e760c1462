"""How many bytes the ASGI server still holds for a WebSocket: the measure that bounds a socket.

ASGI has no back-pressure for WebSocket sends: daphne's ``send`` hands the frame to Twisted,
whose transport buffers without limit and returns at once. Acks do not bound that memory
either: a client may ack frames it never read (it can count them). What a socket costs is what
sits in its transport's buffer, so before each frame the consumer waits until that is below
``Limits.max_buffered_bytes`` (``wait_for_room``); the sender's timeout ends a wait that lasts,
and the client is dropped like any other that cannot take frames.

Channels gives a consumer no way to see the transport. ``WriteBufferMiddleware``, the outermost
WebSocket middleware, sees daphne's own ``send`` (``functools.partial(Server.handle_reply,
protocol)``) and puts a reader of that protocol's Twisted transport in the scope's
``extensions``. Under any other server (or TLS served by daphne itself, another transport) the
reader is absent and only the ack limits apply (docs/SECURITY.md).

The same middleware also gives a writer (``WRITER``): a frame written straight to daphne's
protocol, in pieces, when its buffer has room. A dashboard frame is a few bytes of its own (the
connection's sequence number) in front of a body shared by every client; through ASGI that is
one string joined per client, encoded, and joined again with the frame's header by autobahn,
through four wrappers' ``send``. The writer hands Twisted the header, the prefix and the shared
encoded body as they are (``writeSequence``), and returns False when it cannot (no room: the
caller's path waits and times out as before; a state autobahn must handle itself).
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Callable, Sequence

#: The scope extension holding ``() -> int``: bytes written by the app, not yet by the kernel.
EXTENSION = "connection_health.write_buffer"
#: The scope extension holding a ``WriteNow``: one text message written at once, or False.
WRITER = "connection_health.write_now"
#: How often a waiting sender looks again (the transport tells no one when it drains).
POLL = 0.05

BufferedBytes = Callable[[], int]
#: ``write(parts, limit)``: one WebSocket text message of the UTF-8 ``parts`` written now
#: (True), or nothing written (False: the socket holds more than ``limit`` bytes unsent).
WriteNow = Callable[[Sequence[bytes], int], bool]


class SocketClosed(ConnectionResetError):
    """A write to a socket that is closing or closed (the classifier files it under reset)."""


def _twisted_buffer(transport) -> BufferedBytes | None:
    """A reader of a Twisted TCP transport's unsent bytes, None for another kind."""
    needed = ("dataBuffer", "offset", "_tempDataLen")
    if not all(hasattr(transport, name) for name in needed):
        return None

    def buffered() -> int:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    return buffered


def _is_daphne_server(cls: type) -> bool:
    return cls.__module__ == "daphne.server" and cls.__name__ == "Server"


def daphne_protocol(send):
    """The autobahn protocol of the socket behind daphne's ``send``, None for another server."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    owner = getattr(send.func, "__self__", None)
    # By name, not isinstance: importing daphne.server installs Twisted's reactor (serve.py
    # subclasses the Server, so its whole lineage is looked at).
    if not any(_is_daphne_server(cls) for cls in type(owner).__mro__):
        return None
    return send.args[0]


def buffer_reader(send) -> BufferedBytes | None:
    """The reader of the bytes buffered behind daphne's ``send``, None for another server."""
    protocol = daphne_protocol(send)
    return None if protocol is None else _twisted_buffer(getattr(protocol, "transport", None))


#: The first byte of a frame that is a whole text message: FIN and opcode 1.
_TEXT_FIN = 0x81


def frame_header(length: int) -> bytes:
    """RFC 6455 header of a final, unmasked text frame of ``length`` bytes (a server's)."""
    if length <= 125:
        return struct.pack("!BB", _TEXT_FIN, length)
    if length <= 0xFFFF:
        return struct.pack("!BBH", _TEXT_FIN, 126, length)
    return struct.pack("!BBQ", _TEXT_FIN, 127, length)


#: What the writer reads and calls on autobahn's protocol: a daphne whose autobahn lacks one
#: gets no writer (frames go through ASGI's send as before), not a writer that fails.
_WRITER_NEEDS = (
    "state",
    "STATE_OPEN",
    "send_state",
    "SEND_STATE_GROUND",
    "send_queue",
    "_perMessageCompress",
    "maskServerFrames",
    "maxMessagePayloadSize",
    "sendMessage",
)


def frame_writer(protocol, buffered: BufferedBytes) -> WriteNow | None:
    """A ``WriteNow`` for daphne's ``protocol``: writes only while ``buffered()`` is within
    the limit it is given, raises ``SocketClosed`` once the socket is closing; None when the
    protocol is not the autobahn it was written for.

    The frame is written to the Twisted transport in pieces, with no copy: safe because
    autobahn writes whole frames to the same transport from the same thread (pings, closes),
    and only in the plain case; with compression negotiated, a size limit passed, or autobahn
    in the middle of something (its send queue, a streamed message) the message goes through
    autobahn's own ``sendMessage``, which raises as daphne's send would.
    """
    transport = getattr(protocol, "transport", None)
    if not all(hasattr(protocol, name) for name in _WRITER_NEEDS) or not hasattr(
        transport, "writeSequence"
    ):
        return None

    def write(parts: Sequence[bytes], limit: int) -> bool:
        # autobahn's own constants, read from the protocol daphne made.
        if protocol.state != protocol.STATE_OPEN:
            raise SocketClosed("the WebSocket is closing or closed")
        if buffered() > limit:
            return False
        length = sum(map(len, parts))
        if (
            protocol._perMessageCompress is not None
            or protocol.send_queue
            or protocol.send_state != protocol.SEND_STATE_GROUND
            or protocol.maskServerFrames
            or 0 < protocol.maxMessagePayloadSize < length
        ):
            protocol.sendMessage(b"".join(parts), False)
            return True
        transport.writeSequence([frame_header(length), *parts])
        return True

    return write


class WriteBufferMiddleware:
    """ASGI middleware for WebSockets: gives the application a reader of its socket's buffer
    and a writer of frames straight to daphne (``WRITER``)."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        reader = buffer_reader(send)
        if reader is not None:
            added = {EXTENSION: reader}
            writer = frame_writer(daphne_protocol(send), reader)
            if writer is not None:
                added[WRITER] = writer
            scope = dict(scope, extensions=dict(scope.get("extensions") or {}, **added))
        return await self.application(scope, receive, send)


async def wait_for_room(scope: dict, limit: int) -> None:
    """Return once the socket's transport holds at most ``limit`` bytes (at once when its
    buffer cannot be read). The caller bounds the wait."""
    buffered = (scope.get("extensions") or {}).get(EXTENSION)
    if buffered is None:
        return
    # Polled: Twisted tells only a registered producer when a buffer drains, and the
    # transport's one producer slot is not ours to take.
    while buffered() > limit:  # noqa: ASYNC110
        await asyncio.sleep(POLL)
