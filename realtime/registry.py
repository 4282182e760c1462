"""Who is watching: this process's clients in memory, every server's clients in the database.

Connecting and leaving touch only memory. The heartbeat (``realtime.hub``) writes this server's
rows in one go and deletes rows whose server stopped writing: a server that died leaves no
ghost clients behind for longer than ``Limits.registry_expiry``.
"""

from __future__ import annotations

import functools
import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from realtime.models import ConnectedClient

if TYPE_CHECKING:
    from realtime.client import Client


@functools.cache
def _host() -> str:
    return socket.gethostname()


def server_id() -> str:
    """This server process, as the registry and the logs name it."""
    return f"{_host()}:{os.getpid()}"


class ClientRegistry:
    """The clients connected to this server process."""

    def __init__(self) -> None:
        self._clients: dict[str, Client] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def add(self, client: Client) -> None:
        self._clients[client.id] = client

    def remove(self, client: Client) -> None:
        self._clients.pop(client.id, None)

    def clients(self) -> list[Client]:
        return list(self._clients.values())

    def clear(self) -> None:
        self._clients.clear()


registry = ClientRegistry()


def sync_rows(server: str, clients: list[Client], expiry: float) -> None:
    """Make the database show exactly ``clients`` for ``server``; forget expired servers."""
    now = timezone.now()
    rows = [
        ConnectedClient(
            client_id=c.id,
            server=server,
            user=c.user,
            connected_at=c.connected_at,
            seen_at=now,
            delivered=c.delivered,
            retries=c.retries,
        )
        for c in clients
    ]
    ConnectedClient.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["client_id"],
        update_fields=["seen_at", "delivered", "retries"],
    )
    ConnectedClient.objects.filter(server=server).exclude(
        client_id__in=[c.id for c in clients]
    ).delete()
    ConnectedClient.objects.filter(seen_at__lt=now - timedelta(seconds=expiry)).delete()


def clients_elsewhere(server: str, expiry: float) -> int:
    """Clients of the other live server processes, as of their last heartbeat."""
    return ConnectedClient.objects.live(expiry).exclude(server=server).count()
