"""What both backends add to Django's ``DatabaseWrapper``: retries, reconnects, the cursor wrapper.

Django's own wrapper connects once; after the server dropped the connection it raises
"connection already closed" until something calls ``close_old_connections()``, which a
long-running process may never do. This mixin:

- connects with the alias's ``RetryPolicy`` (``settings_dict["RETRY"]``), so a server that is
  restarting gets time to come back; not inside ``fail_fast()`` (web requests), and never
  after an error that waiting will not fix (a wrong database name, user or password);
- closes a connection the driver already knows is dead before it hands out a cursor, so the
  statement that follows connects afresh;
- adds ``retrying_execute`` to ``execute_wrappers`` of every connection object: Django makes
  one per thread, so every thread gets it, once.
"""

from __future__ import annotations

import time
from dataclasses import replace

from django.db import DEFAULT_DB_ALIAS, Error

from connections_app import retry
from connections_app.db.counters import record_reconnect, record_retry
from connections_app.db.exceptions import ConnectionRejected, RetriesExhausted
from connections_app.db.fail_fast import policy_here
from connections_app.db.retrying_cursor import retrying_execute
from connections_app.errors import DATABASE_TRANSIENT, is_retryable


class ResilientDatabaseMixin:
    #: True when a statement that raised certainly did not run (SQLite runs in-process). A
    #: server may have run a statement whose reply was lost with the connection.
    failed_statements_did_not_run = False

    def __init__(self, settings_dict: dict, alias: str = DEFAULT_DB_ALIAS) -> None:
        super().__init__(settings_dict, alias)
        self.retry_policy = replace(retry.DATABASE, **settings_dict.get("RETRY", {}))
        self.connected_at: float | None = None
        # First in the list is outermost: each retry runs any wrapper added later again.
        self.execute_wrappers.insert(0, retrying_execute)

    def connect(self) -> None:
        """Connect; while the error means "try later", try again with the retry policy."""
        policy = policy_here(self.retry_policy)
        try:
            retry.retry(self._connect_once, policy, DATABASE_TRANSIENT, on_retry=self._on_retry)
        except self.Database.Error as exc:
            if not is_retryable(exc, DATABASE_TRANSIENT):
                raise ConnectionRejected(self.alias, exc) from exc
            if policy.attempts:
                raise RetriesExhausted(self.alias, "connecting", policy, exc) from exc
            raise
        self.connected_at = time.monotonic()

    def close_if_health_check_failed(self) -> None:
        """Close a dead connection; never connect here: the statement that follows does."""
        if self.connection is not None and not self.in_atomic_block:
            reason = self.dead_connection_error()
            if reason is not None:
                self._discard(reason)
                return
        was_open = self.connection is not None
        super().close_if_health_check_failed()
        if was_open and self.connection is None:
            failure = self.Database.OperationalError("the health check query failed")
            record_reconnect(self.alias, failure)

    def dead_connection_error(self, probe: bool = False) -> Exception | None:
        """Why the open connection is unusable, or None; ``probe`` may ask the socket."""
        return None

    def replace_if_dead(self, probe: bool = False) -> bool:
        """Reconnect when the open connection is dead; whether it was."""
        if self.connection is None:
            return False
        reason = self.dead_connection_error(probe)
        if reason is None:
            return False
        self.reconnect(reason)
        return True

    def reconnect(self, reason: BaseException) -> None:
        """Replace a connection found dead (``reason`` says how) at once."""
        self._discard(reason)
        self.ensure_connection()

    def _discard(self, reason: BaseException) -> None:
        """Count and report a connection found dead (``reason`` says how), and close it."""
        record_reconnect(self.alias, reason)
        self._close_quietly()

    def renew_cursor(self, cursor_wrapper) -> None:
        """Give Django's cursor wrapper a driver cursor of the current connection."""
        stale = cursor_wrapper.cursor
        with self.wrap_database_errors:
            cursor_wrapper.cursor = self.create_cursor()
        try:
            stale.close()
        except self.Database.Error:  # the cursor of a dead connection may refuse to close
            pass

    def connection_age(self) -> float | None:
        """Seconds since this thread's connection was opened, None when there is none."""
        if self.connection is None or self.connected_at is None:
            return None
        return time.monotonic() - self.connected_at

    def _connect_once(self) -> None:
        try:
            super().connect()
        except Exception:
            self._close_quietly()  # a half-made connection would leak its socket
            raise

    def _close_quietly(self) -> None:
        try:
            self.close()
        except Error:  # closing a dead connection may fail: it is thrown away either way
            pass

    def _on_retry(self, exc: BaseException, policy: retry.RetryPolicy, wait: float) -> None:
        record_retry(self.alias, exc)
