"""Who is watching: this process's clients in memory, every server's clients in the database.

Connecting and leaving touch only memory. The heartbeat (``realtime.hub``) writes this server's
rows in one go and deletes rows whose server stopped writing: a server that died leaves no
ghost clients behind for longer than ``Limits.registry_expiry``.
"""

from __future__ import annotations

import functools
import os
import socket
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.utils import timezone

from realtime.client import Client
from realtime.models import ConnectedClient


@functools.cache
def _host() -> str:
    return socket.gethostname()


def server_id() -> str:
    """This server process, as the registry and the logs name it: the endpoint of every error
    the dashboard reports (the client goes in the extra detail; a fingerprint per browser
    would defeat the handler's suppression and fill ErrorStat with a row per tab)."""
    return f"{_host()}:{os.getpid()}"


class ClientRegistry:
    """The clients connected to this server process."""

    def __init__(self) -> None:
        self._clients: dict[str, Client] = {}

    def __len__(self) -> int:
        return len(self._clients)

    def add(self, client: Client) -> None:
        """Register ``client`` until it shuts down (a client already shut down is not)."""
        if client.closed:
            return
        self._clients[client.id] = client
        client.on_shutdown(self.remove)

    def remove(self, client: Client) -> None:
        self._clients.pop(client.id, None)

    def clients(self) -> list[Client]:
        return list(self._clients.values())

    def clear(self) -> None:
        """Forget every client (tests: each starts with the registry of a fresh process)."""
        self._clients.clear()


registry = ClientRegistry()


def sync_rows(server: str, clients: list[Client], expiry: float) -> None:
    """Make the database show exactly ``clients`` for ``server``; forget expired servers.

    Runs every heartbeat, in a thread, while frames go out: with 1,000 clients one ORM upsert
    of every row held the GIL for 55 to 90 ms. So the rows already there get their counters
    in one ``executemany``, and only new clients go through the ORM.
    """
    now = timezone.now()
    rows = ConnectedClient.objects.filter(server=server)
    # One transaction: one commit, not one per row. A failure is reported by the heartbeat,
    # and the next one, 10 s later, writes everything again.
    with transaction.atomic():
        stored = set(rows.values_list("client_id", flat=True))
        _insert([c for c in clients if c.id not in stored], server, now)
        _update_counters([c for c in clients if c.id in stored], now)
        gone = stored - {c.id for c in clients}
        if gone:
            rows.filter(client_id__in=gone).delete()
        ConnectedClient.objects.filter(seen_at__lt=now - timedelta(seconds=expiry)).delete()


def _insert(clients: list[Client], server: str, now: datetime) -> None:
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
    # A conflict: the row was written since it was read (by this server's previous heartbeat,
    # in a race with a slow one): it is updated instead.
    ConnectedClient.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["client_id"],
        update_fields=["server", "seen_at", "delivered", "retries"],
    )


def _update_counters(clients: list[Client], now: datetime) -> None:
    if not clients:
        return
    meta, quote = ConnectedClient._meta, connection.ops.quote_name
    column = {name: quote(meta.get_field(name).column) for name in _COUNTER_FIELDS}
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {column['seen_at']} = %s, "
        f"{column['delivered']} = %s, {column['retries']} = %s WHERE {column['client_id']} = %s"
    )
    seen_at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.executemany(sql, [(seen_at, c.delivered, c.retries, c.id) for c in clients])


_COUNTER_FIELDS = ("seen_at", "delivered", "retries", "client_id")


def clients_elsewhere(server: str, expiry: float) -> int:
    """Clients of the other live server processes, as of their last heartbeat."""
    return ConnectedClient.objects.live(expiry).exclude(server=server).count()
