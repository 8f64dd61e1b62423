"""Retry arithmetic: is this failure retried, and after how long."""

from __future__ import annotations

import math
import random

from durable.errors import SerializationError
from durable.types import Jitter, RetryPolicy, to_seconds

__all__ = ["retry_delay"]


def retry_delay(
    policy: RetryPolicy, attempt: int, error: BaseException, rng: random.Random
) -> float | None:
    """Seconds before attempt ``attempt + 1``, or ``None`` when ``attempt`` was the last.

    The delay is ``initial_delay * backoff_rate ** (attempt - 1)``, capped at ``max_delay``,
    then jittered. When ``initial_delay`` is at least one second the delay is rounded up to
    whole seconds (at least 1), as AWS does; sub-second policies keep exact delays.
    Serialization errors are never retried: the same value would fail again.
    """
    if attempt >= policy.max_attempts or isinstance(error, SerializationError):
        return None
    if not policy.should_retry(error):
        return None
    initial = to_seconds(policy.initial_delay, what="initial_delay", allow_zero=True)
    cap = to_seconds(policy.max_delay, what="max_delay", allow_zero=True)
    delay = min(initial * policy.backoff_rate ** (attempt - 1), cap)
    if policy.jitter is Jitter.FULL:
        delay = rng.uniform(0.0, delay)
    elif policy.jitter is Jitter.HALF:
        delay = delay / 2 + rng.uniform(0.0, delay / 2)
    if initial >= 1:
        return float(max(1, math.ceil(delay)))
    return delay
