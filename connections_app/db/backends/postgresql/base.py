"""PostgreSQL backend: Django's own, plus the retrying cursor (see connections_app.db)."""

from __future__ import annotations

import select

import psycopg
from django.db.backends.postgresql import base

from connections_app.db.backends.base import ResilientDatabaseMixin


class DatabaseWrapper(ResilientDatabaseMixin, base.DatabaseWrapper):
    def dead_connection_error(self, probe: bool = False) -> Exception | None:
        """Why the open connection is unusable, or None.

        ``closed`` is free: psycopg sets it once a statement saw the connection fail. The
        probe (before a write is sent) also catches a server that hung up while we were idle:
        an idle connection has nothing to read unless the server spoke first, which it does
        to say goodbye (FATAL 57P01 on shutdown or ``pg_terminate_backend``) or to notify.
        """
        if self.connection.closed:
            return psycopg.OperationalError("connection already closed")
        if probe and _has_unread_input(self.connection) and not self.is_usable():
            return psycopg.OperationalError("the server closed the connection while idle")
        return None


def _has_unread_input(connection: psycopg.Connection) -> bool:
    poller = select.poll()  # not select.select(): it fails on descriptors above 1023
    poller.register(connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))
