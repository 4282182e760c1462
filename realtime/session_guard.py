"""A handshake while the database is away: reported in one line and refused, no traceback.

Channels' ``AuthMiddlewareStack`` reads the session and its user before any consumer runs; with
the database down that read raises, the error escapes to daphne, and daphne logs "Exception
inside application" with a traceback for every browser that tries to reconnect. Here the error
goes to ``report`` (counted, logged once per window) and the handshake is refused (HTTP 403);
the page retries with its back-off, as after any refused connect.
"""

from __future__ import annotations

from channels.security.websocket import WebsocketDenier
from django.db import DatabaseError

from connections_app.error_handler import report


class SessionGuard:
    """ASGI middleware around the session and auth stack of the WebSocket route: a
    ``DatabaseError`` before the handshake is accepted refuses it; after, it is raised."""

    def __init__(self, application) -> None:
        self.application = application

    async def __call__(self, scope, receive, send):
        seen: set[str] = set()

        async def receive_noted():
            message = await receive()
            seen.add(message["type"])
            return message

        async def send_noted(message):
            seen.add(message["type"])
            await send(message)

        try:
            return await self.application(scope, receive_noted, send_noted)
        except DatabaseError as exc:
            if "websocket.accept" in seen:
                raise  # a consumer's own error, once it was serving: not the handshake's
            report(exc, "websocket.connect", scope.get("path", ""))
            if seen & {"websocket.close", "websocket.disconnect"}:
                return None  # already closed: a second close is an error to daphne
            if "websocket.connect" in seen:
                await send({"type": "websocket.close", "code": 1011})  # refused: HTTP 403
                return None
            return await WebsocketDenier()(scope, receive, send)
