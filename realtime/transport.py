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
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

#: The scope extension holding ``() -> int``: bytes written by the app, not yet by the kernel.
EXTENSION = "connection_health.write_buffer"
#: How often a waiting sender looks again (the transport tells no one when it drains).
POLL = 0.05

BufferedBytes = Callable[[], int]


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


def buffer_reader(send) -> BufferedBytes | None:
    """The reader of the bytes buffered behind daphne's ``send``, None for another server."""
    if not isinstance(send, functools.partial) or not send.args:
        return None
    owner = getattr(send.func, "__self__", None)
    # By name, not isinstance: importing daphne.server installs Twisted's reactor (serve.py
    # subclasses the Server, so its whole lineage is looked at).
    if not any(_is_daphne_server(cls) for cls in type(owner).__mro__):
        return None
    return _twisted_buffer(getattr(send.args[0], "transport", None))


class WriteBufferMiddleware:
    """ASGI middleware for WebSockets: gives the application a reader of its socket's buffer."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        reader = buffer_reader(send)
        if reader is not None:
            extensions = dict(scope.get("extensions") or {}, **{EXTENSION: reader})
            scope = dict(scope, extensions=extensions)
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
