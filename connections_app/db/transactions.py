"""``retry_transaction``: run a function in ``transaction.atomic``, and again from the start when
it fails with a retryable error (a lock, a lost connection).

A statement inside a transaction cannot be retried alone: the server has already rolled the
whole transaction back. So the retrying cursor raises ``TransactionRetryNeeded`` there, and
this runs the function again; the failed run was rolled back, so nothing is written twice::

    @retry_transaction                     # or @retry_transaction(using="x", policy=...)
    def store(rows): ...

The runs are ``retry.retry``'s, the one loop. When the policy runs out the last error is raised.

Not run again: errors that are not retryable; ``RetriesExhausted`` (connecting, or SQLite's
BEGIN IMMEDIATE, already used up a retry policy); a failed COMMIT (if the connection was lost
during COMMIT, ``CommitOutcomeUnknown``: it may have been saved); a function called inside
another atomic block, which runs once, like ``atomic``, since only the outermost block can run
again; and any run inside ``fail_fast()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, Error, connections, transaction

from connections_app.db.counters import record_retry
from connections_app.db.exceptions import CommitOutcomeUnknown, RetriesExhausted
from connections_app.db.fail_fast import policy_here
from connections_app.errors import DATABASE_TRANSIENT, ErrorCategory, classify, is_retryable
from connections_app.retry import RetryPolicy, retry

F = TypeVar("F", bound=Callable)


def retry_transaction(
    func: F | None = None, /, *, using: str | None = None, policy: RetryPolicy | None = None
):
    """Decorate ``func`` (bare or with options) to run in a transaction that is retried.

    ``policy`` defaults to the alias's own (``DATABASES[using]["RETRY"]``).
    """
    alias = using or DEFAULT_DB_ALIAS

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def run(*args, **kwargs):
            connection = connections[alias]
            if connection.in_atomic_block:
                with transaction.atomic(using=alias):
                    return function(*args, **kwargs)

            def attempt():
                # Before BEGIN, a connection the server hung up on is replaced for free.
                connection.replace_if_dead(probe=True)
                with _CommitChecked(alias):
                    return function(*args, **kwargs)

            return retry(
                attempt,
                policy_here(policy or connection.retry_policy),
                _may_run_again,
                on_retry=lambda exc, _policy, _wait: record_retry(alias, exc),
            )

        return run  # type: ignore[return-value]

    return decorate(func) if func is not None else decorate


class _CommitChecked:
    """``transaction.atomic`` whose COMMIT lost with its connection says so."""

    def __init__(self, using: str) -> None:
        self.using = using
        self._atomic = transaction.atomic(using=using)

    def __enter__(self) -> None:
        self._atomic.__enter__()

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            self._atomic.__exit__(exc_type, exc, traceback)
        except Error as commit_error:
            if exc is None and classify(commit_error) is ErrorCategory.DB_DISCONNECTED:
                raise CommitOutcomeUnknown(self.using) from commit_error
            raise


def _may_run_again(exc: BaseException) -> bool:
    """Whether a run that failed with ``exc`` may run again."""
    # RetriesExhausted: connecting or BEGIN already used up a policy; another would multiply.
    # CommitOutcomeUnknown is a DatabaseError too, but not retryable: it may have been saved.
    return not isinstance(exc, RetriesExhausted | CommitOutcomeUnknown) and is_retryable(
        exc, DATABASE_TRANSIENT
    )
