"""One retry policy and one retry loop (sync and async) for every backoff in the project.

A ``RetryPolicy`` is an immutable value: sharing one between threads or tasks is safe, and
``next()`` returns a new policy instead of counting inside the old one (the shape of urllib3's
``Retry``). It says how often and how long to wait, never how long a try may take: timeouts
belong to the caller, who knows what a try is.

``retry`` and ``aretry`` are the only loops. They take the categories worth another try (the
sets in ``errors``: ``retry_on=DATABASE_LOCKED``) or, where the decision needs more than the
error's category, a predicate that starts from ``errors.is_retryable``.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from connections_app.errors import ErrorCategory, is_retryable

T = TypeVar("T")
#: The errors worth another try: categories, or a predicate for decisions that need more.
RetryOn = frozenset[ErrorCategory] | Callable[[BaseException], bool]
OnRetry = Callable[[BaseException, "RetryPolicy", float], None]
#: ``delay(exc, backoff)``: the wait before the next try, e.g. stretched by a ``Retry-After``.
Delay = Callable[[BaseException, float], float]


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try an operation again and how long to wait in between.

    Fields:
        attempts: retries after the first try (0: try once, never retry; None: forever).
        base_delay: seconds before the first retry.
        factor: each later delay is the previous one times ``factor`` (1 gives a fixed delay).
        cap: no delay is ever longer than this many seconds.
        jitter: fraction (0..1) of each delay drawn at random, so many clients retrying at
            once do not hit a recovering server in lockstep.
        retries_done: how many retries this policy has already used up.
    """

    attempts: int | None = 3
    base_delay: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.0
    retries_done: int = 0

    def __post_init__(self) -> None:
        _require(
            self.attempts is None or self.attempts >= 0,
            "attempts",
            self.attempts,
            "must be 0 or more, or None (forever)",
        )
        _require(self.base_delay >= 0, "base_delay", self.base_delay, "must be 0 or more")
        _require(self.factor >= 1, "factor", self.factor, "must be 1 or more")
        _require(self.cap >= self.base_delay, "cap", self.cap, "must be at least base_delay")
        _require(0 <= self.jitter <= 1, "jitter", self.jitter, "must be between 0 and 1")
        _require(
            0 <= self.retries_done <= (math.inf if self.attempts is None else self.attempts),
            "retries_done",
            self.retries_done,
            "must be between 0 and attempts",
        )

    def delay(self, retry_number: int) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based), jitter not applied."""
        if retry_number < 1:
            raise ValueError(f"retry_number must be 1 or more, got {retry_number!r}")
        return min(self.cap, self.base_delay * self.factor ** (retry_number - 1))

    def delays(self) -> list[float]:
        """The waits before each remaining retry, in order, without jitter (a policy that
        retries forever has no list: ValueError)."""
        if self.attempts is None:
            raise ValueError("a RetryPolicy with attempts=None retries forever")
        return [self.delay(n) for n in range(self.retries_done + 1, self.attempts + 1)]

    def is_exhausted(self) -> bool:
        return self.attempts is not None and self.retries_done >= self.attempts

    def next(self) -> RetryPolicy:
        """The policy after one more retry; raises ``RetryExhausted`` when none is left."""
        if self.is_exhausted():
            raise RetryExhausted(self)
        return replace(self, retries_done=self.retries_done + 1)

    def next_delay(self, rng: random.Random | None = None) -> float:
        """The wait before the next retry, with jitter applied."""
        base = self.delay(self.retries_done + 1)
        if not self.jitter:
            return base
        spread = base * self.jitter
        return base - spread + (rng or random).random() * spread

    def total_delay(self) -> float:
        """The longest the waits between all remaining tries can add up to (inf: forever)."""
        return math.inf if self.attempts is None else sum(self.delays())

    def with_attempts(self, attempts: int | None) -> RetryPolicy:
        return replace(self, attempts=attempts, retries_done=0)


class RetryExhausted(Exception):
    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(f"no retries left after {policy.retries_done} of {policy.attempts}")
        self.policy = policy


def _require(condition: bool, field: str, value: object, rule: str) -> None:
    if not condition:
        raise ValueError(f"RetryPolicy.{field} {rule}, got {value!r}")


def retry(
    func: Callable[[], T],
    policy: RetryPolicy,
    retry_on: RetryOn,
    *,
    on_retry: OnRetry | None = None,
    delay: Delay | None = None,
    sleep: Callable[[float], None] = time.sleep,
    failed: BaseException | None = None,
) -> T:
    """Call ``func`` until it succeeds, its error is not in ``retry_on``, or the policy runs out
    (then the last error is raised). ``on_retry(exc, next_policy, wait)`` hears of each retry
    before its wait.

    ``failed``: the first try already happened elsewhere and raised this; start by deciding on
    it (the retrying cursor runs its statement once before it knows it needs a loop).
    """
    if failed is not None:
        policy = _wait_before_next(failed, policy, retry_on, on_retry, delay, sleep)
    while True:
        try:
            return func()
        except Exception as exc:
            policy = _wait_before_next(exc, policy, retry_on, on_retry, delay, sleep)


async def aretry(
    func: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    retry_on: RetryOn,
    *,
    on_retry: OnRetry | None = None,
    delay: Delay | None = None,
    failed: BaseException | None = None,
) -> T:
    """The async twin of ``retry``: the waits do not block the event loop. ``failed`` as in
    ``retry`` (a WebSocket frame's first write is tried outside any loop, see
    ``realtime.broadcast.deliver``)."""
    if failed is not None:
        policy, wait = _next_try(failed, policy, retry_on, on_retry, delay)
        await asyncio.sleep(wait)
    while True:
        try:
            return await func()
        except Exception as exc:
            policy, wait = _next_try(exc, policy, retry_on, on_retry, delay)
            await asyncio.sleep(wait)


def _wait_before_next(exc, policy, retry_on, on_retry, delay, sleep) -> RetryPolicy:
    policy, wait = _next_try(exc, policy, retry_on, on_retry, delay)
    sleep(wait)
    return policy


def _next_try(
    exc: BaseException,
    policy: RetryPolicy,
    retry_on: RetryOn,
    on_retry: OnRetry | None,
    delay: Delay | None,
) -> tuple[RetryPolicy, float]:
    """The decision both loops share: raise ``exc`` when final, else report it and return the
    next try's policy and the wait before it."""
    worth_it = retry_on(exc) if callable(retry_on) else is_retryable(exc, retry_on)
    if policy.is_exhausted() or not worth_it:
        raise exc
    wait = policy.next_delay() if delay is None else delay(exc, policy.next_delay())
    policy = policy.next()
    if on_retry is not None:
        on_retry(exc, policy, wait)
    return policy, wait


# Named presets, each in one place.
#: HTTP retries, as urllib3 spaces them: 0.5 s, 1 s, 2 s, capped at 10 s, a little jitter.
HTTP = RetryPolicy(attempts=3, base_delay=0.5, factor=2.0, cap=10.0, jitter=0.1)
#: Database reconnects and locks: 3 retries after 1 s, 2 s, 4 s.
DATABASE = RetryPolicy(attempts=3, base_delay=1.0, factor=2.0, cap=4.0)
#: A WebSocket send that did not go through: one retry after 100 ms (the sender bounds the
#: first try by 5 s and the retry by 2 s).
WEBSOCKET = RetryPolicy(attempts=1, base_delay=0.1, factor=1.0, cap=0.1)
#: Background jobs (alert delivery): min(60 * 2**n, 300) s, 3 retries.
TASK = RetryPolicy(attempts=3, base_delay=60.0, factor=2.0, cap=300.0)
#: Never retry.
NONE = RetryPolicy(attempts=0, base_delay=0.0, factor=1.0, cap=0.0)
