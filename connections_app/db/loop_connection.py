"""The connection of a long-running loop (the runner, the alert sender): recycled, not renewed
for each unit of work.

Django closes a connection past ``CONN_MAX_AGE`` around web requests only; a loop must do it
itself, before each unit of work (a claim, a batch, a round of alerts). ``CONN_MAX_AGE=0``
(SQLite's default) means a connection per request, and a loop that claims and stores several
times a second would reconnect as often: on SQLite each connect reruns its PRAGMAs and
registers its functions, about 0.12 ms of the runner's CPU per result at 100 results/s. So a
loop keeps a connection at least ``KEEP_FOR`` seconds, whatever ``CONN_MAX_AGE`` says; a longer
``CONN_MAX_AGE`` still holds. A connection that had an error is looked at at once, and one the
server hung up on is replaced before the next transaction begins (``retry_transaction``).
"""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections

#: Seconds a loop keeps its connection at least.
KEEP_FOR = 30.0


def close_stale_connection(using: str = DEFAULT_DB_ALIAS) -> None:
    """Before a loop's unit of work: close this thread's connections that are past their age
    (at least ``KEEP_FOR`` seconds) or found broken."""
    connection = connections[using]
    if connection.in_atomic_block:
        return
    age = connection.connection_age()
    if age is not None and age < KEEP_FOR and not connection.errors_occurred:
        return
    close_old_connections()
