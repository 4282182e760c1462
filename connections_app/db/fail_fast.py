"""Fail fast: database errors are not waited out while someone is waiting for an answer.

A long-running loop (``runchecks``) should outlast a database restart, so the database layer
backs off and retries connects, locks and whole transactions with the alias's ``RetryPolicy``.
A web request should not: a load balancer asking ``/health/`` needs a 503 within about one
connect timeout, not after every retry. Inside ``fail_fast()`` (a context manager and
decorator) the layer uses ``retry.NONE`` instead; a connection of ours found dead is still
replaced at once, since that says nothing about the database.

The flag is a context variable, so it follows a request into ``sync_to_async`` threads and
never leaks into other threads or tasks. ``fail_fast_middleware`` turns it on for every
request; ``policy_here`` is what the layer asks before it retries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from asgiref.sync import iscoroutinefunction
from django.utils.decorators import sync_and_async_middleware

from connections_app import retry

_failing_fast: ContextVar[bool] = ContextVar("connections_app_db_fail_fast", default=False)


@contextmanager
def fail_fast() -> Iterator[None]:
    """Within this block, database errors are raised at once, never backed off and retried."""
    token = _failing_fast.set(True)
    try:
        yield
    finally:
        _failing_fast.reset(token)


def policy_here(policy: retry.RetryPolicy) -> retry.RetryPolicy:
    """``policy``, or no retry at all inside ``fail_fast()``."""
    return retry.NONE if _failing_fast.get() else policy


@sync_and_async_middleware
def fail_fast_middleware(get_response: Callable) -> Callable:
    """Every request runs in ``fail_fast()``: with the database down it fails in about one
    connect timeout. First in ``MIDDLEWARE``, so that sessions and auth are covered too."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            with fail_fast():
                return await get_response(request)

    else:

        def middleware(request):
            with fail_fast():
                return get_response(request)

    return middleware
