"""HTTP retries from the one ``RetryPolicy``: urllib3's ``Retry`` (requests), a wrapper (aiohttp).

Both paths retry the same things and wait the same way:

- a retry status (429, 502, 503, 504 by default) answered to an idempotent method;
- a network error that ``errors.classify`` calls retryable: for an idempotent method, or for any
  method when the connection never opened (nothing was sent, as urllib3 does);
- the wait is the policy's backoff, or longer when the server's ``Retry-After`` asks for longer;
  the ``Retry-After`` part never exceeds ``max_retry_after``.

When the retries run out on a retry status, the last response is returned (not raised), so the
caller sees the real status; use ``raise_for_status`` to turn it into an error.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import aiohttp
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from connections_app.errors import classify
from connections_app.retry import RetryPolicy, acall_with_retry

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})

# aiohttp errors that mean the network failed (an invalid URL or a 4xx raised by
# raise_for_status is not worth a retry whatever the classifier says of it).
_NETWORK_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)
# aiohttp errors raised before a single byte of the request was sent.
_NOT_SENT_ERRORS = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)

OnRetry = Callable[[], None]


@dataclass(frozen=True)
class HttpRetry:
    """Which HTTP requests are tried again, and how long to wait before each retry.

    Fields:
        policy: the backoff and the number of retries.
        methods: methods whose requests may be sent twice (idempotent ones).
        statuses: answers that ask for a retry.
        max_retry_after: the longest ``Retry-After`` honoured, in seconds.
    """

    policy: RetryPolicy
    methods: frozenset[str] = IDEMPOTENT_METHODS
    statuses: frozenset[int] = RETRY_STATUSES
    max_retry_after: float = 30.0

    def wait(self, backoff: float, retry_after: str | None) -> float:
        """Seconds before the next try: the backoff, or the server's capped ``Retry-After``."""
        asked = _retry_after_seconds(retry_after)
        if asked is None:
            return backoff
        return max(backoff, min(asked, self.max_retry_after))

    def for_urllib3(self, on_retry: OnRetry | None = None) -> Retry:
        """A urllib3 ``Retry`` (for ``HTTPAdapter(max_retries=...)``) that follows these rules."""
        return _PolicyRetry(
            rules=self,
            on_retry=on_retry,
            total=len(self.policy.delays()),
            allowed_methods=self.methods,
            status_forcelist=self.statuses,
            raise_on_status=False,
            # Retry-After is honoured by _PolicyRetry.sleep, capped; urllib3's own handling
            # would also retry 413/429/503 outside ``statuses``.
            respect_retry_after_header=False,
        )

    async def request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        on_retry: OnRetry | None = None,
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        """``session.request`` with these retries; the body is read and the connection released.

        The returned response's ``read()``, ``text()`` and ``json()`` answer from memory.
        """
        tries = _Tries(self, session, method.upper(), url, kwargs, on_retry)
        try:
            return await acall_with_retry(
                tries.attempt, self.policy, tries.should_retry, tries.note, delay=tries.wait
            )
        except _RetryStatus as exc:
            return exc.response


class _RetryStatus(Exception):
    """A retry status, raised so that ``acall_with_retry`` tries again."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        super().__init__(f"HTTP {response.status}")
        self.response = response


class _Tries:
    """One aiohttp call's tries: what is retried, and how long a ``Retry-After`` stretches
    the wait."""

    def __init__(
        self,
        rules: HttpRetry,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        kwargs: dict[str, Any],
        on_retry: OnRetry | None,
    ) -> None:
        self.rules, self.session, self.method, self.url = rules, session, method, url
        self.kwargs, self.on_retry = kwargs, on_retry

    async def attempt(self) -> aiohttp.ClientResponse:
        async with self.session.request(self.method, self.url, **self.kwargs) as response:
            # Read now: the connection goes back to the pool before the caller looks.
            await response.read()
        if response.status in self.rules.statuses and self.method in self.rules.methods:
            raise _RetryStatus(response)
        return response

    def should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, _RetryStatus):
            return True
        if not isinstance(exc, _NETWORK_ERRORS) or not classify(exc).retryable:
            return False
        return self.method in self.rules.methods or isinstance(exc, _NOT_SENT_ERRORS)

    def wait(self, exc: BaseException, backoff: float) -> float:
        if isinstance(exc, _RetryStatus):
            return self.rules.wait(backoff, exc.response.headers.get("Retry-After"))
        return backoff

    def note(self, exc: BaseException, policy: RetryPolicy, wait: float) -> None:
        if self.on_retry is not None:
            self.on_retry()


class _PolicyRetry(Retry):
    """urllib3's ``Retry`` with the waits of a ``RetryPolicy`` and the classifier's verdict."""

    def __init__(
        self,
        *,
        rules: HttpRetry,
        policy: RetryPolicy | None = None,
        backoff: float = 0.0,
        on_retry: OnRetry | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.rules = rules
        self.policy = rules.policy if policy is None else policy
        self.backoff = backoff
        self.on_retry = on_retry

    def new(self, **kw: Any) -> Self:
        # urllib3 builds every next Retry through new(): carry our fields along.
        ours = {"rules": self.rules, "policy": self.policy, "backoff": self.backoff}
        return super().new(**(ours | {"on_retry": self.on_retry} | kw))

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if error is not None and not classify(error).retryable:
            raise error.with_traceback(_stacktrace)
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        retry.backoff = self.policy.next_delay()
        retry.policy = self.policy.next()
        if self.on_retry is not None:
            self.on_retry()
        return retry

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        retry_after = response.headers.get("Retry-After") if response is not None else None
        wait = self.rules.wait(self.backoff, retry_after)
        if wait > 0:
            time.sleep(wait)


def _retry_after_seconds(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) in seconds from now; None if absent."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
