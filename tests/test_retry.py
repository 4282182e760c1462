"""RetryPolicy is a value: every behaviour is checked without I/O or sleeping."""

import random

import pytest

from connections_app import retry
from connections_app.retry import RetryExhausted, RetryPolicy, call_with_retry


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


def test_the_seed_presets():
    assert retry.DATABASE.delays() == [1, 2, 4]
    assert [min(60 * 2**n, 300) for n in range(3)] == retry.TASK.delays()
    assert retry.WEBSOCKET.delays() == [0.1]
    assert retry.WEBSOCKET.timeout() == 5.0
    assert retry.WEBSOCKET.next().timeout() == 2.0
    assert retry.HTTP.delays() == [0.5, 1, 2]


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"attempts": -1}, "attempts"),
        ({"base_delay": -0.1}, "base_delay"),
        ({"factor": 0.5}, "factor"),
        ({"base_delay": 5, "cap": 1}, "cap"),
        ({"jitter": 1.5}, "jitter"),
        ({"first_timeout": 0}, "first_timeout"),
        ({"retry_timeout": -1}, "retry_timeout"),
        ({"attempts": 1, "retries_done": 2}, "retries_done"),
    ],
)
def test_invalid_values_name_the_field(fields, name):
    with pytest.raises(ValueError, match=rf"RetryPolicy\.{name} "):
        RetryPolicy(**fields)


def test_call_with_retry_stops_on_success_and_reports_each_retry():
    calls, retries, slept = [], [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset")
        return "done"

    result = call_with_retry(
        flaky,
        RetryPolicy(attempts=5, base_delay=1),
        should_retry=lambda exc: True,
        on_retry=lambda exc, policy, wait: retries.append(policy.retries_done),
        sleep=slept.append,
    )
    assert result == "done"
    assert retries == [1, 2]
    assert slept == [1, 2]


def test_call_with_retry_never_retries_what_should_not_be():
    calls = []

    def broken():
        calls.append(1)
        raise ValueError("syntax")

    with pytest.raises(ValueError):
        call_with_retry(broken, RetryPolicy(attempts=5), lambda e: False, sleep=lambda s: None)
    assert len(calls) == 1


def test_call_with_retry_gives_up_after_the_policy():
    calls = []

    def down():
        calls.append(1)
        raise ConnectionRefusedError()

    with pytest.raises(ConnectionRefusedError):
        call_with_retry(down, RetryPolicy(attempts=3), lambda e: True, sleep=lambda s: None)
    assert len(calls) == 4


def test_wait_to_retry_reports_waits_and_gives_the_next_policy():
    retries, slept = [], []
    error = ConnectionResetError("reset")
    policy = retry.wait_to_retry(
        error,
        RetryPolicy(attempts=2, base_delay=1),
        should_retry=lambda exc: True,
        on_retry=lambda exc, policy, wait: retries.append((exc, policy.retries_done, wait)),
        sleep=slept.append,
    )
    assert policy.retries_done == 1
    assert retries == [(error, 1, 1)]
    assert slept == [1]


@pytest.mark.parametrize(
    ("policy", "retryable"),
    [(RetryPolicy(attempts=2), False), (RetryPolicy(attempts=1).next(), True)],
    ids=["not-retryable", "exhausted"],
)
def test_wait_to_retry_raises_a_final_error_without_waiting(policy, retryable):
    slept = []
    with pytest.raises(ConnectionResetError, match="reset"):
        retry.wait_to_retry(
            ConnectionResetError("reset"), policy, lambda exc: retryable, sleep=slept.append
        )
    assert slept == []
