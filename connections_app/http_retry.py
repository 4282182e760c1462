"""HTTP retries from the one ``RetryPolicy`` and the one loop, for requests and aiohttp alike.

Both paths retry the same things and wait the same way:

- a retry status (429, 502, 503, 504 by default) answered to an idempotent method;
- a network error in ``errors.NETWORK_TRANSIENT``: for an idempotent method, or for any method
  when the connection never opened (nothing was sent, so nothing can be done twice);
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
from typing import Any

import aiohttp
import requests
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from connections_app.errors import NETWORK_TRANSIENT, causes, is_retryable
from connections_app.retry import RetryPolicy, aretry, retry

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRY_STATUSES = frozenset({429, 502, 503, 504})

# Errors raised before a single byte of the request was sent: connecting failed.
_NOT_SENT_ERRORS = (
    NewConnectionError,  # also urllib3's NameResolutionError
    ConnectTimeoutError,
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
)

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

    def send(
        self,
        send_once: Callable[[], requests.Response],
        method: str,
        *,
        on_retry: OnRetry | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> requests.Response:
        """``send_once()`` (one requests ``Session.send``) with these retries."""
        tries = _Tries(self, method.upper(), on_retry)

        def attempt() -> requests.Response:
            response = send_once()
            tries.check_status(response.status_code, response)
            return response

        try:
            return retry(
                attempt, self.policy, tries.should_retry, on_retry=tries.note,
                delay=tries.wait, sleep=sleep,
            )  # fmt: skip
        except _RetryStatus as exc:
            return exc.response

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
        tries = _Tries(self, method.upper(), on_retry)

        async def attempt() -> aiohttp.ClientResponse:
            async with session.request(tries.method, url, **kwargs) as response:
                # Read now: the connection goes back to the pool before the caller looks.
                await response.read()
            tries.check_status(response.status, response)
            return response

        try:
            return await aretry(
                attempt, self.policy, tries.should_retry, on_retry=tries.note, delay=tries.wait
            )
        except _RetryStatus as exc:
            return exc.response


class _RetryStatus(Exception):
    """A retry status, raised so that the retry loop tries again."""

    def __init__(self, status: int, response: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.response = response


class _Tries:
    """One request's tries: what is retried, and how long a ``Retry-After`` stretches a wait."""

    def __init__(self, rules: HttpRetry, method: str, on_retry: OnRetry | None) -> None:
        self.rules, self.method, self.on_retry = rules, method, on_retry

    def check_status(self, status: int, response: Any) -> None:
        if status in self.rules.statuses and self.method in self.rules.methods:
            raise _RetryStatus(status, response)

    def should_retry(self, exc: BaseException) -> bool:
        if isinstance(exc, _RetryStatus):
            return True
        if not is_retryable(exc, NETWORK_TRANSIENT):
            return False
        return self.method in self.rules.methods or _not_sent(exc)

    def wait(self, exc: BaseException, backoff: float) -> float:
        if isinstance(exc, _RetryStatus):
            return self.rules.wait(backoff, exc.response.headers.get("Retry-After"))
        return backoff

    def note(self, exc: BaseException, policy: RetryPolicy, wait: float) -> None:
        if isinstance(exc, _RetryStatus) and isinstance(exc.response, requests.Response):
            exc.response.close()  # a streamed body would keep its connection from the pool
        if self.on_retry is not None:
            self.on_retry()


def _not_sent(exc: BaseException) -> bool:
    return any(isinstance(link, _NOT_SENT_ERRORS) for link in causes(exc))


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
