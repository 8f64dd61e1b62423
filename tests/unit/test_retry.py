"""Retry arithmetic."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from durable.errors import PayloadTooLargeError, SerializationError
from durable.retry import retry_delay
from durable.types import Jitter, RetryPolicy


def test_default_policy_matches_the_contract() -> None:
    policy = RetryPolicy.default()
    assert policy.max_attempts == 6
    assert policy.initial_delay == timedelta(seconds=5)
    assert policy.max_delay == timedelta(seconds=60)
    assert policy.backoff_rate == 2.0
    assert policy.jitter is Jitter.FULL
    assert RetryPolicy.none().max_attempts == 1


def test_exponential_backoff_without_jitter_is_capped() -> None:
    policy = RetryPolicy(max_attempts=10, initial_delay=5, max_delay=60, jitter=Jitter.NONE)
    rng = random.Random(1)
    delays = [retry_delay(policy, attempt, ValueError(), rng) for attempt in range(1, 10)]
    assert delays == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 60.0, 60.0]
    assert retry_delay(policy, 10, ValueError(), rng) is None


def test_full_jitter_delays_are_whole_seconds_within_bounds() -> None:
    policy = RetryPolicy.default()
    rng = random.Random(7)
    for attempt in range(1, 6):
        delay = retry_delay(policy, attempt, ValueError(), rng)
        assert delay is not None
        assert delay == int(delay)
        assert 1 <= delay <= min(5 * 2 ** (attempt - 1), 60)
    assert retry_delay(policy, 6, ValueError(), rng) is None


def test_half_jitter_stays_in_upper_half() -> None:
    policy = RetryPolicy(initial_delay=0.4, max_delay=10, jitter=Jitter.HALF)
    rng = random.Random(3)
    for _ in range(50):
        delay = retry_delay(policy, 1, ValueError(), rng)
        assert delay is not None
        assert 0.2 <= delay <= 0.4


def test_sub_second_delays_are_kept_exact() -> None:
    policy = RetryPolicy(initial_delay=0.05, backoff_rate=2, jitter=Jitter.NONE)
    assert retry_delay(policy, 2, ValueError(), random.Random()) == pytest.approx(0.1)


def test_retry_on_types_and_predicates() -> None:
    only_timeouts = RetryPolicy(retry_on=(TimeoutError,))
    rng = random.Random()
    assert retry_delay(only_timeouts, 1, TimeoutError(), rng) is not None
    assert retry_delay(only_timeouts, 1, ValueError(), rng) is None
    by_message = RetryPolicy(retry_on=lambda exc: "retry" in str(exc))
    assert retry_delay(by_message, 1, RuntimeError("please retry"), rng) is not None
    assert retry_delay(by_message, 1, RuntimeError("fatal"), rng) is None


def test_serialization_errors_are_never_retried() -> None:
    rng = random.Random()
    assert retry_delay(RetryPolicy(), 1, SerializationError("x"), rng) is None
    assert retry_delay(RetryPolicy(), 1, PayloadTooLargeError("x"), rng) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"initial_delay": -1}, "initial_delay"),
        ({"backoff_rate": 0.5}, "backoff_rate"),
    ],
)
def test_invalid_policies_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
