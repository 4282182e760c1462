"""RetryPolicy is a value and the loops take it: every behaviour is checked without I/O or
sleeping (the sync loop's sleep is injected, the async one waits 0 s)."""

import math
import random
import ssl

import pytest

from connections_app import retry
from connections_app.errors import NETWORK_TRANSIENT
from connections_app.retry import RetryExhausted, RetryPolicy, aretry

ANY = lambda exc: True  # noqa: E731
NEVER = lambda exc: False  # noqa: E731


def test_delays_grow_by_the_factor_up_to_the_cap():
    policy = RetryPolicy(attempts=6, base_delay=1, factor=2, cap=10)
    assert policy.delays() == [1, 2, 4, 8, 10, 10]


def test_next_returns_a_new_policy_and_leaves_the_old_one_alone():
    first = RetryPolicy(attempts=2, base_delay=1)
    second = first.next()
    assert (first.retries_done, second.retries_done) == (0, 1)
    assert second.delays() == [2]
    assert second.next().is_exhausted()
    with pytest.raises(RetryExhausted):
        second.next().next()


def test_jitter_stays_within_its_fraction():
    policy = RetryPolicy(attempts=1, base_delay=10, cap=10, jitter=0.5)
    rng = random.Random(7)
    waits = [policy.next_delay(rng) for _ in range(200)]
    assert min(waits) >= 5 and max(waits) <= 10
    assert len(set(waits)) > 100


def test_the_presets():
    assert retry.DATABASE.delays() == [1, 2, 4]
    assert [min(60 * 2**n, 300) for n in range(3)] == retry.TASK.delays()
    assert retry.WEBSOCKET.delays() == [0.1]
    assert retry.HTTP.delays() == [0.5, 1, 2]


def test_none_attempts_means_forever():
    policy = RetryPolicy(attempts=None, base_delay=1, cap=4)
    for _ in range(1000):
        policy = policy.next()
    assert not policy.is_exhausted()
    assert policy.next_delay() == 4
    assert policy.total_delay() == math.inf
    with pytest.raises(ValueError, match="forever"):
        policy.delays()


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"attempts": -1}, "attempts"),
        ({"base_delay": -0.1}, "base_delay"),
        ({"factor": 0.5}, "factor"),
        ({"base_delay": 5, "cap": 1}, "cap"),
        ({"jitter": 1.5}, "jitter"),
        ({"attempts": 1, "retries_done": 2}, "retries_done"),
    ],
)
def test_invalid_values_name_the_field(fields, name):
    with pytest.raises(ValueError, match=rf"RetryPolicy\.{name} "):
        RetryPolicy(**fields)


def test_retry_stops_on_success_and_reports_each_retry():
    calls, retries, slept = [], [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "done"

    result = retry.retry(
        flaky,
        RetryPolicy(attempts=5, base_delay=1),
        ANY,
        on_retry=lambda exc, policy, wait: retries.append(policy.retries_done),
        sleep=slept.append,
    )
    assert result == "done"
    assert retries == [1, 2]
    assert slept == [1, 2]


def test_retry_never_retries_what_should_not_be():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("syntax")

    with pytest.raises(ValueError):
        retry.retry(broken, RetryPolicy(attempts=5), NEVER, sleep=lambda s: None)
    assert len(calls) == 1


def test_retry_gives_up_after_the_policy():
    calls = []

    def down():
        calls.append(1)
        raise ConnectionRefusedError()

    with pytest.raises(ConnectionRefusedError):
        retry.retry(down, RetryPolicy(attempts=3), ANY, sleep=lambda s: None)
    assert len(calls) == 4


def test_retry_takes_categories_from_the_one_classifier():
    calls = []

    def refused_then_tls():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionRefusedError()  # refused: in NETWORK_TRANSIENT
        raise ssl.SSLError("certificate verify failed")  # tls: not

    with pytest.raises(ssl.SSLError, match="certificate"):
        retry.retry(
            refused_then_tls, RetryPolicy(attempts=5), NETWORK_TRANSIENT, sleep=lambda s: None
        )
    assert len(calls) == 2


def test_a_first_try_made_elsewhere_is_decided_on_first():
    retries, slept, calls = [], [], []
    error = ConnectionResetError("reset")

    def works():
        calls.append(1)
        return "done"

    result = retry.retry(
        works,
        RetryPolicy(attempts=2, base_delay=1),
        ANY,
        on_retry=lambda exc, policy, wait: retries.append((exc, policy.retries_done, wait)),
        sleep=slept.append,
        failed=error,
    )
    assert result == "done"
    assert retries == [(error, 1, 1)]
    assert slept == [1]
    assert calls == [1]


@pytest.mark.parametrize(
    ("policy", "retryable"),
    [(RetryPolicy(attempts=2), False), (RetryPolicy(attempts=1).next(), True)],
    ids=["not-retryable", "exhausted"],
)
def test_a_final_first_failure_is_raised_without_waiting(policy, retryable):
    slept = []
    with pytest.raises(ConnectionResetError, match="reset"):
        retry.retry(
            lambda: None,
            policy,
            lambda exc: retryable,
            sleep=slept.append,
            failed=ConnectionResetError("reset"),
        )
    assert slept == []


async def test_the_async_loop_follows_the_same_rules():
    calls, retries = [], []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "done"

    policy = RetryPolicy(attempts=5, base_delay=0, cap=0)
    on_retry = lambda exc, policy, wait: retries.append(policy.retries_done)  # noqa: E731
    assert await aretry(flaky, policy, NETWORK_TRANSIENT, on_retry=on_retry) == "done"
    assert retries == [1, 2]
    tries = []

    async def always_reset():
        tries.append(1)
        raise ConnectionResetError("reset")

    with pytest.raises(ConnectionResetError):
        await aretry(always_reset, RetryPolicy(attempts=2, base_delay=0, cap=0), ANY)
    assert len(tries) == 3


async def test_the_async_loop_decides_on_a_first_try_made_elsewhere_first():
    calls, retries = [], []
    error = ConnectionResetError("reset")

    async def works():
        calls.append(1)
        return "done"

    on_retry = lambda exc, policy, wait: retries.append((exc, policy.retries_done))  # noqa: E731
    policy = RetryPolicy(attempts=1, base_delay=0, cap=0)
    assert await aretry(works, policy, ANY, on_retry=on_retry, failed=error) == "done"
    assert retries == [(error, 1)] and calls == [1]

    async def fails():
        calls.append(1)
        raise ConnectionResetError("again")

    with pytest.raises(ConnectionResetError, match="again"):  # its one retry failed: final
        await aretry(fails, policy, ANY, failed=error)
    assert len(calls) == 2
    with pytest.raises(ConnectionResetError, match="reset"):  # not worth a retry: raised
        await aretry(works, policy, lambda exc: False, failed=error)
    assert len(calls) == 2
