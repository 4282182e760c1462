"""One retry policy for every backoff in the project.

A ``RetryPolicy`` is an immutable value: sharing one between threads or tasks is safe, and
``next()`` returns a new policy instead of counting inside the old one (the shape of urllib3's
``Retry``). Nothing here sleeps or does I/O; callers decide how to wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often to try an operation again and how long to wait in between.

    Fields:
        attempts: retries after the first try (0 means: try once, never retry).
        base_delay: seconds before the first retry.
        factor: each later delay is the previous one times ``factor`` (1 gives a fixed delay).
        cap: no delay is ever longer than this many seconds.
        jitter: fraction (0..1) of each delay drawn at random, so many clients retrying at
            once do not hit a recovering server in lockstep.
        first_timeout: seconds the first try may take (None: the caller's own timeout).
        retry_timeout: seconds each retry may take (None: the same as ``first_timeout``).
        retries_done: how many retries this policy has already used up.
    """

    attempts: int = 3
    base_delay: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    jitter: float = 0.0
    first_timeout: float | None = None
    retry_timeout: float | None = None
    retries_done: int = 0

    def __post_init__(self) -> None:
        _require(self.attempts >= 0, "attempts", self.attempts, "must be 0 or more")
        _require(self.base_delay >= 0, "base_delay", self.base_delay, "must be 0 or more")
        _require(self.factor >= 1, "factor", self.factor, "must be 1 or more")
        _require(self.cap >= self.base_delay, "cap", self.cap, "must be at least base_delay")
        _require(0 <= self.jitter <= 1, "jitter", self.jitter, "must be between 0 and 1")
        for name in ("first_timeout", "retry_timeout"):
            value = getattr(self, name)
            _require(value is None or value > 0, name, value, "must be above 0 or None")
        _require(
            0 <= self.retries_done <= self.attempts,
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
        """The waits before each remaining retry, in order, without jitter."""
        return [self.delay(n) for n in range(self.retries_done + 1, self.attempts + 1)]

    def is_exhausted(self) -> bool:
        return self.retries_done >= self.attempts

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

    def timeout(self) -> float | None:
        """How long the current try may take: the first try and the retries may differ."""
        if self.retries_done == 0 or self.retry_timeout is None:
            return self.first_timeout
        return self.retry_timeout

    def total_delay(self) -> float:
        """The longest the waits between all remaining tries can add up to."""
        return sum(self.delays())

    def with_attempts(self, attempts: int) -> RetryPolicy:
        return replace(self, attempts=attempts, retries_done=0)


class RetryExhausted(Exception):
    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__(f"no retries left after {policy.retries_done} of {policy.attempts}")
        self.policy = policy


def _require(condition: bool, field: str, value: object, rule: str) -> None:
    if not condition:
        raise ValueError(f"RetryPolicy.{field} {rule}, got {value!r}")


def call_with_retry(
    func: Callable[[], T],
    policy: RetryPolicy,
    should_retry: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, RetryPolicy, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    delay: Callable[[BaseException, float], float] | None = None,
) -> T:
    """Call ``func`` until it succeeds, the error is not retryable, or the policy runs out.

    ``delay(exc, backoff)`` may stretch a wait (a server's ``Retry-After``, say).
    """
    while True:
        try:
            return func()
        except Exception as exc:
            policy = wait_to_retry(exc, policy, should_retry, on_retry, sleep, delay)


def wait_to_retry(
    exc: BaseException,
    policy: RetryPolicy,
    should_retry: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, RetryPolicy, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    delay: Callable[[BaseException, float], float] | None = None,
) -> RetryPolicy:
    """After a try failed with ``exc``: raise ``exc`` when it is final (not to be retried, or
    no retry left); else report it to ``on_retry``, wait, and return the next try's policy.

    ``call_with_retry`` takes this step after each failed call. A caller takes it itself when
    its first try already happened elsewhere, or when a try is a block of the caller's own
    code, run again by a ``for`` loop, rather than one callable.
    """
    policy, wait = _next_try(exc, policy, should_retry, on_retry, delay)
    sleep(wait)
    return policy


def _next_try(
    exc: BaseException,
    policy: RetryPolicy,
    should_retry: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, RetryPolicy, float], None] | None,
    delay: Callable[[BaseException, float], float] | None,
) -> tuple[RetryPolicy, float]:
    """The decision both loops share: raise ``exc`` when final, else report it and return the
    next try's policy and the wait before it."""
    if policy.is_exhausted() or not should_retry(exc):
        raise exc
    wait = policy.next_delay() if delay is None else delay(exc, policy.next_delay())
    policy = policy.next()
    if on_retry is not None:
        on_retry(exc, policy, wait)
    return policy, wait


async def acall_with_retry(
    func: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    should_retry: Callable[[BaseException], bool],
    on_retry: Callable[[BaseException, RetryPolicy, float], None] | None = None,
    delay: Callable[[BaseException, float], float] | None = None,
) -> T:
    """The async twin of ``call_with_retry``; each try is bounded by ``policy.timeout()``."""
    while True:
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for starts a task per call,
            # and the dashboard calls this once per frame per client.
            async with asyncio.timeout(policy.timeout()):
                return await func()
        except Exception as exc:
            policy, wait = _next_try(exc, policy, should_retry, on_retry, delay)
            await asyncio.sleep(wait)


# Named presets: the policies the seed documents, each in one place.
#: urllib3-style HTTP retries: 0.5 s, 1 s, 2 s, capped at 10 s, a little jitter.
HTTP = RetryPolicy(attempts=3, base_delay=0.5, factor=2.0, cap=10.0, jitter=0.1)
#: The seed's database reconnects: 3 attempts after 1 s, 2 s, 4 s.
DATABASE = RetryPolicy(attempts=3, base_delay=1.0, factor=2.0, cap=4.0)
#: The seed's WebSocket send: first try within 5 s, one retry after 100 ms within 2 s.
WEBSOCKET = RetryPolicy(
    attempts=1, base_delay=0.1, factor=1.0, cap=0.1, first_timeout=5.0, retry_timeout=2.0
)
#: The seed's background task: min(60 * 2**n, 300) s, 3 retries.
TASK = RetryPolicy(attempts=3, base_delay=60.0, factor=2.0, cap=300.0)
#: Never retry.
NONE = RetryPolicy(attempts=0, base_delay=0.0, factor=1.0, cap=0.0)
