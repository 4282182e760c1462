"""The retrying cursor: an execute wrapper that outlives lost connections and locks.

Django calls ``retrying_execute`` around every statement (``execute_wrappers``). In autocommit:

- a lock (SQLite "database is locked/busy", PostgreSQL deadlock, serialization failure, lock
  timeout) means the statement did not run: it is tried again with the retry policy;
- a connection found dead is replaced at once (the new one is opened with the retry policy,
  see ``fail_fast``) and the statement run again when that is safe: a read; any statement
  on SQLite, where a statement that raised did not run; on PostgreSQL a write only if the
  connection was seen dead before the write was sent. A write that reached the server and
  lost its reply may have committed: it is raised, never run twice.

Never retried: other errors (syntax, integrity, data); ``executemany`` (a failure part-way
leaves the first rows written, and its parameters may be a one-shot iterator); server-side
cursors (the cursor lived in the lost session); and anything inside ``transaction.atomic``,
whose transaction the server already rolled back: there a retryable error becomes
``TransactionRetryNeeded`` and ``retry_transaction`` re-runs the whole block.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.db import Error

from connections_app.db.counters import record_retry
from connections_app.db.exceptions import RetriesExhausted, TransactionRetryNeeded
from connections_app.db.fail_fast import policy_here
from connections_app.errors import (
    DATABASE_LOCKED,
    DATABASE_TRANSIENT,
    ErrorCategory,
    classify,
    is_retryable,
)
from connections_app.retry import RetryPolicy, retry

Execute = Callable[[object, object, bool, dict], object]


def retrying_execute(execute: Execute, sql, params, many: bool, context: dict):
    """Run one statement; retry it when the error and the situation make that safe."""
    connection = context["connection"]
    if (
        not connection.in_atomic_block
        and not connection.failed_statements_did_not_run
        and not _is_read(sql)
        and connection.replace_if_dead(probe=True)
    ):
        # Probe before a write: sent on a connection the server already hung up on, it would
        # fail like a write whose reply was lost, and could not be retried though it never ran.
        connection.renew_cursor(context["cursor"])
    try:
        return execute(sql, params, many, context)
    except Error as exc:
        return _retry(exc, execute, sql, params, many, context)


def _retry(error: Error, execute: Execute, sql, params, many: bool, context: dict):
    """After a failed first try: raise, or recover and try again with the retry policy."""
    connection = context["connection"]
    category = classify(error)
    if category not in DATABASE_TRANSIENT:
        raise error
    if connection.in_atomic_block:
        raise TransactionRetryNeeded(connection.alias, category) from error
    if many or _is_server_side(context["cursor"]):
        raise error
    policy = policy_here(connection.retry_policy)
    failed: Error | None = error  # the first try, in retrying_execute, hit the lock
    if category is ErrorCategory.DB_DISCONNECTED:
        if not (connection.failed_statements_did_not_run or _is_read(sql)):
            raise error
        # At once: the server may be fine, only our connection died. Connecting again backs
        # off by itself if the server is down.
        connection.reconnect(error)
        connection.renew_cursor(context["cursor"])
        failed = None
    try:
        return retry(
            partial(execute, sql, params, many, context),
            policy,
            DATABASE_LOCKED,
            on_retry=partial(_on_retry, connection.alias),
            failed=failed,
        )
    except Error as exc:
        if policy.attempts and is_retryable(exc, DATABASE_LOCKED):
            raise RetriesExhausted(connection.alias, "a statement", policy, exc) from exc
        raise


def _on_retry(alias: str, exc: BaseException, policy: RetryPolicy, wait: float) -> None:
    record_retry(alias, exc)


def _is_read(sql) -> bool:
    # Django's ORM writes "SELECT" first; raw SQL may indent. A WITH may hide a write: not a read.
    return isinstance(sql, str) and sql.lstrip()[:6].upper() == "SELECT"


def _is_server_side(cursor) -> bool:
    # Only named (server-side) driver cursors have a name.
    return getattr(cursor.cursor, "name", None) is not None
