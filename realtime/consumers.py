"""The dashboard's WebSocket: staff with ``view_healthcheck`` only, a snapshot on connect,
then live events. ``/ws/health/?check=<id>`` watches one check (its page): its snapshot and
its events only (``protocol.Watch``, ``protocol.shown``). The hub's heartbeat judges the
session again (``realtime.access``).

Thin: it checks who connects, turns frames into ``protocol.ClientMessage`` and hands the work
to the hub, the client's outbox and the snapshot. The wire format is in docs/EVENTS.md.
"""

from __future__ import annotations

from dataclasses import replace

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from connections_app.error_handler import report
from realtime.access import REASONS, refusal
from realtime.client import Client
from realtime.hub import get_hub
from realtime.limits import limits
from realtime.protocol import (
    CLOSE_BAD_REQUEST,
    CLOSE_POLICY,
    BadFrame,
    ClientMessage,
    encode_event,
    error_body,
    parse_client_frame,
    parse_watch,
)
from realtime.registry import server_id
from realtime.snapshot import send_snapshot
from realtime.transport import WRITER, wait_for_room


class DashboardConsumer(AsyncJsonWebsocketConsumer):
    # Events reach consumers through the process hub, not through a layer channel per
    # consumer: a browser costs no Redis subscription and no receive loop of its own.
    channel_layer_alias = None
    client: Client | None = None

    async def dispatch(self, message: dict) -> None:
        # Channels' own dispatch closes stale database connections before every message, a
        # thread hop per ack. Handlers here reach the database only via database_sync_to_async,
        # which does that itself.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        # Accept first: a close before the handshake is a bare HTTP 403 and the page could not
        # tell "log in" (4401) from "not allowed" (4403) or "no such check" (4404).
        try:
            watch = parse_watch(self.scope.get("query_string", b""))
        except BadFrame as bad:
            await self.accept()
            await self.close(code=CLOSE_BAD_REQUEST, reason=bad.message)
            return
        # Permissions (and the check) are read from the database: in a thread.
        code = await database_sync_to_async(refusal)(self.scope.get("user"), watch)
        await self.accept()
        if code is not None:
            await self.close(code=code, reason=REASONS[code])
            return
        user = self.scope["user"].get_username()
        session = self.scope.get("session")
        self.client = Client(
            user,
            send=self._send_text,
            close=self._close,
            limits=limits(),
            session_key=session.session_key if session is not None else None,
            watch=watch,
            write=(self.scope.get("extensions") or {}).get(WRITER),
        )
        try:
            await get_hub().join(self.client)
        except BaseException:
            # daphne may cancel a slow connect; disconnect() would then never run, leaving a
            # registered client and its sender behind.
            self.client.shutdown("connect cancelled")
            raise

    async def disconnect(self, code: int) -> None:
        if self.client is not None:
            self.client.shutdown("disconnected")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None):
        client = self.client
        if client is None or client.closed:
            return
        try:
            await self.receive_json(parse_client_frame(text_data, bytes_data, client.limits))
        except BadFrame as bad:
            await self._bad_frame(client, bad)
        except Exception as exc:  # a bug here must cost one error frame, not the socket
            report(exc, "ws.receive", server_id(), client=client.id)
            client.outbox.offer(error_body("internal", "the server could not handle that"))

    async def receive_json(self, content: ClientMessage, **kwargs) -> None:
        client = self.client
        if content.type == "ping":
            if not client.pings.allow():
                raise BadFrame("too_fast", f"at most one ping per {client.pings.seconds:g} s")
            client.outbox.offer(encode_event("pong", {}))
        elif content.type == "ack":
            if not client.ack(content.seq):
                raise BadFrame("bad_field", f"seq {content.seq} was never sent")
        else:
            self._check_snapshot_rate(client)
            if content.type == "filter":
                if client.watch.check is not None:
                    raise BadFrame("bad_field", "a check's connection watches that check only")
                client.watch = replace(client.watch, tags=content.tags)
            await send_snapshot(client)

    def _check_snapshot_rate(self, client: Client) -> None:
        """Snapshots cost the database: a client may ask for one (filter, resync) at most
        once per ``snapshot_min_interval``; the one sent on connect does not count."""
        if not client.snapshot_requests.allow():
            interval = client.snapshot_requests.seconds
            raise BadFrame("too_fast", f"at most one snapshot request per {interval:g} s")

    async def _bad_frame(self, client: Client, bad: BadFrame) -> None:
        client.outbox.offer(error_body(bad.code, bad.message))
        if client.bad_frame():
            await client.close(CLOSE_POLICY, "too many bad frames")

    async def _send_text(self, text: str) -> None:
        # Wait before writing, not after: a send that times out here wrote nothing, so its
        # retry cannot repeat a frame.
        await wait_for_room(self.scope, self.client.limits.max_buffered_bytes)
        await self.base_send({"type": "websocket.send", "text": text})

    async def _close(self, code: int, reason: str) -> None:
        await self.close(code=code, reason=reason)
