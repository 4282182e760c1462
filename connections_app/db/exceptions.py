"""The errors the database layer raises itself, each an ``OperationalError`` with a clear text.

They are Django's ``OperationalError`` so every ``except DatabaseError`` keeps working, and
each is raised ``from`` the driver's error, so ``classify`` still sees the cause.
"""

from __future__ import annotations

from django.db import OperationalError

from connections_app.redaction import redact
from connections_app.retry import RetryPolicy


class TransactionRetryNeeded(OperationalError):
    """A retryable error inside ``transaction.atomic``: only the whole block can run again."""

    def __init__(self, alias: str, category: str) -> None:
        super().__init__(
            f"{category} inside transaction.atomic on database {alias!r}: the transaction is "
            "lost, so the statement cannot be retried alone; retry the whole block "
            "(connections_app.db.transactions.retry_transaction does)"
        )


class CommitOutcomeUnknown(OperationalError):
    """The connection was lost during COMMIT: the transaction may or may not have been saved."""

    def __init__(self, alias: str) -> None:
        super().__init__(
            f"the connection to database {alias!r} was lost during COMMIT: whether the "
            "transaction was saved is unknown, so it is not run again; re-run it only if it is "
            "idempotent (for example inserts with a unique key and ignore_conflicts)"
        )


class ConnectionRejected(OperationalError):
    """Connecting failed in a way that waiting will not fix: it is raised at once."""

    def __init__(self, alias: str, error: BaseException) -> None:
        super().__init__(
            f"cannot connect to database {alias!r}, and waiting will not help, so it is not "
            f"retried: check DATABASE_URL (name, user, password, file): {redact(str(error))}"
        )


class RetriesExhausted(OperationalError):
    """A retryable error that outlasted every retry of the policy."""

    def __init__(self, alias: str, what: str, policy: RetryPolicy, last: BaseException) -> None:
        super().__init__(
            f"{what} on database {alias!r} still failing after {policy.attempts} retries "
            f"({policy.with_attempts(policy.attempts).total_delay():g} s of waits): "
            f"{redact(str(last))}"
        )
