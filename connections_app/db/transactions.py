"""``retry_transaction``: run a block in ``transaction.atomic``, and again from the start when it
fails with a retryable error (a lock, a lost connection).

A statement inside a transaction cannot be retried alone: the server has already rolled the
whole transaction back. So the retrying cursor raises ``TransactionRetryNeeded`` there, and
this runs the block again; the failed run was rolled back, so nothing is written twice.

Two forms::

    @retry_transaction                     # or @retry_transaction(using="x", policy=...)
    def store(rows): ...

    for attempt in retry_transaction(using="x"):
        with attempt:
            ...

The waits between runs are ``retry.wait_to_retry``'s, the step ``call_with_retry`` takes too:
the loop form runs the caller's own block, so it cannot hand ``call_with_retry`` a callable.
When the policy runs out, the last error is raised from the ``for`` statement.

Not run again: errors that are not retryable; ``RetriesExhausted`` (connecting, or SQLite's
BEGIN IMMEDIATE, already used up a retry policy); a failed COMMIT (if the connection was lost
during COMMIT, ``CommitOutcomeUnknown``: it may have been saved); a block nested in another
atomic block, which runs once, like ``atomic``, since only the outermost block can run again;
and any block inside ``fail_fast()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import TypeVar

from django.db import DEFAULT_DB_ALIAS, Error, connections, transaction

from connections_app.db.counters import record_retry
from connections_app.db.exceptions import CommitOutcomeUnknown, RetriesExhausted
from connections_app.db.fail_fast import policy_here
from connections_app.db.retrying_cursor import is_retryable
from connections_app.errors import ErrorCategory, classify
from connections_app.retry import RetryPolicy, wait_to_retry

F = TypeVar("F", bound=Callable)


def retry_transaction(
    func: F | None = None, /, *, using: str | None = None, policy: RetryPolicy | None = None
):
    """Decorate ``func`` (bare or with options), or give the attempts to iterate over.

    ``policy`` defaults to the alias's own (``DATABASES[using]["RETRY"]``).
    """
    retrier = TransactionRetry(using or DEFAULT_DB_ALIAS, policy)
    return retrier(func) if func is not None else retrier


class TransactionRetry:
    def __init__(self, using: str, policy: RetryPolicy | None) -> None:
        self.using = using
        self.policy = policy

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def run(*args, **kwargs):
            for attempt in self:
                with attempt:
                    return func(*args, **kwargs)

        return run  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Attempt]:
        connection = connections[self.using]
        if connection.in_atomic_block:
            yield Attempt(self.using, retryable=False)
            return
        policy = policy_here(self.policy or connection.retry_policy)
        while True:  # bounded by the policy: wait_to_retry raises once it is used up
            # Before BEGIN, a connection the server hung up on is replaced for free.
            connection.replace_if_dead(probe=True)
            attempt = Attempt(self.using, retryable=True)
            yield attempt
            if attempt.error is None:
                return
            policy = wait_to_retry(attempt.error, policy, _may_retry, self._on_retry)

    def _on_retry(self, exc: BaseException, policy: RetryPolicy, wait: float) -> None:
        record_retry(self.using, exc)


class Attempt:
    """One run of the block inside ``transaction.atomic``."""

    def __init__(self, using: str, retryable: bool) -> None:
        self.using = using
        self.retryable = retryable  # False: never run again, so nothing is swallowed
        self.error: BaseException | None = None
        self._atomic = transaction.atomic(using=using)

    def __enter__(self) -> Attempt:
        self._atomic.__enter__()
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        try:
            self._atomic.__exit__(exc_type, exc, traceback)
        except Error as commit_error:
            if exc is None and classify(commit_error) is ErrorCategory.DB_DISCONNECTED:
                raise CommitOutcomeUnknown(self.using) from commit_error
            raise
        if exc is None or not (self.retryable and _may_retry(exc)):
            return False
        self.error = exc
        return True  # swallowed: the loop runs the block again, or raises it when out of retries


def _may_retry(exc: BaseException) -> bool:
    """Whether a run that failed with ``exc`` may run again."""
    # RetriesExhausted: connecting or BEGIN already used up a policy; another would multiply.
    return (
        isinstance(exc, Exception) and not isinstance(exc, RetriesExhausted) and is_retryable(exc)
    )
