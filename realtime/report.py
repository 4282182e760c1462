"""Errors of the live dashboard, through the one error handler.

The endpoint is the server process, not the client: a fingerprint per browser would defeat
the handler's suppression and fill ErrorStat with one row per tab. The client goes in the
context's extra detail, which the first log line of each window shows.
"""

from __future__ import annotations

from connections_app.error_handler import ErrorContext, get_global_error_handler
from realtime.registry import server_id


def report(exc: BaseException, operation: str, **extra: object) -> None:
    context = ErrorContext(operation=operation, endpoint=server_id(), **extra)
    get_global_error_handler().handle_error(exc, context)
