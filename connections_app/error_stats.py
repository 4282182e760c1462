"""Write the error handler's counts to ``ErrorStat`` rows: one upsert per fingerprint per flush.

Django's ``bulk_create(update_conflicts=True)`` can only overwrite a count, not add to it, so
the upsert is one ``INSERT ... ON CONFLICT (fingerprint) DO UPDATE SET count = count + n``
statement per fingerprint, which SQLite (3.24+) and PostgreSQL spell the same way. It adds
atomically in the database, so several processes may flush at once without a lost update.

On a database error the counts go back to the handler (merged with any that arrived in the
meantime), the error is reported through the handler itself (one log line, suppressed when it
repeats) and the flush returns 0: flushing never crashes its caller and never loses a count.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from connections_app.db.transactions import retry_transaction
from connections_app.error_handler import ErrorHandler, PendingCount, get_global_error_handler
from connections_app.models import ErrorStat

_COLUMNS = (
    "fingerprint",
    "category",
    "operation",
    "endpoint",
    "count",
    "first_seen",
    "last_seen",
    "severity",
    "last_message",
)


def flush_error_stats(handler: ErrorHandler | None = None, using: str = DEFAULT_DB_ALIAS) -> int:
    """Add the counts gathered since the last flush to ``ErrorStat``; the rows written.

    Returns 0 when there was nothing to write or the database failed (counts kept for the
    next flush, failure reported through ``handler``).
    """
    handler = handler or get_global_error_handler()
    pending = handler.take_pending()
    if not pending:
        return 0
    try:
        _upsert(pending, using)
    except DatabaseError as exc:
        # Also CommitOutcomeUnknown: the counts come back, so a commit that did land before
        # the connection dropped is counted twice, once; no count is ever lost.
        handler.restore_pending(pending)
        handler.report(exc, "error_stats.flush", using)
        return 0
    return len(pending)


def _upsert(pending: dict[str, PendingCount], using: str) -> None:
    # A lock or a lost connection re-runs the whole transaction (the database RetryPolicy).
    @retry_transaction(using=using)
    def write() -> None:
        with connections[using].cursor() as cursor:
            sql = _upsert_sql(using)
            for fingerprint, count in pending.items():
                cursor.execute(sql, _row(fingerprint, count, using))

    write()


def _upsert_sql(using: str) -> str:
    quote = connections[using].ops.quote_name
    table = quote(ErrorStat._meta.db_table)
    columns = ", ".join(quote(c) for c in _COLUMNS)
    count, last_seen = quote("count"), quote("last_seen")
    return (
        f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(_COLUMNS))}) "
        f"ON CONFLICT ({quote('fingerprint')}) DO UPDATE SET "
        f"{count} = {table}.{count} + EXCLUDED.{count}, "
        f"{last_seen} = CASE WHEN EXCLUDED.{last_seen} > {table}.{last_seen} "
        f"THEN EXCLUDED.{last_seen} ELSE {table}.{last_seen} END, "
        f"{quote('severity')} = EXCLUDED.{quote('severity')}, "
        f"{quote('last_message')} = EXCLUDED.{quote('last_message')}"
    )


def _row(fingerprint: str, count: PendingCount, using: str) -> list:
    """The values in ``_COLUMNS`` order, truncated to the fields' lengths, ready for the DB."""
    connection = connections[using]
    values = {
        "fingerprint": fingerprint,
        "category": str(count.category),
        "operation": count.operation,
        "endpoint": count.endpoint,
        "count": count.count,
        "first_seen": datetime.fromtimestamp(count.first_seen, UTC),
        "last_seen": datetime.fromtimestamp(count.last_seen, UTC),
        "severity": str(count.severity),
        "last_message": count.last_message,
    }
    row = []
    for column in _COLUMNS:
        field = ErrorStat._meta.get_field(column)
        value = values[column]
        if isinstance(value, str) and field.max_length:
            value = value[: field.max_length]
        row.append(field.get_db_prep_save(value, connection))
    return row
