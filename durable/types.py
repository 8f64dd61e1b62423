"""Small value types shared by every layer: statuses, error records, policies, durations."""

from __future__ import annotations

import enum
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

import msgspec

__all__ = [
    "Duration",
    "ErrorInfo",
    "Execution",
    "ExecutionStatus",
    "Jitter",
    "RetryPolicy",
    "StepSemantics",
    "to_seconds",
]

T = TypeVar("T")

MAX_ERROR_MESSAGE = 16 * 1024
"""Recorded error messages are cut at this many characters (the log must stay small)."""
MAX_STACK_FRAMES = 30
"""Recorded stacks keep the innermost frames only."""

_HIDDEN_FRAMES = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    os.sep + "anyio" + os.sep,
    os.sep + "asyncio" + os.sep,
    os.sep + "concurrent" + os.sep,
)


def _user_frames(exc: BaseException) -> list[str]:
    """The traceback without the engine's and the event loop's own frames."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not any(part in frame.filename for part in _HIDDEN_FRAMES)
    ]
    return [line.rstrip("\n") for line in traceback.format_list(frames[-MAX_STACK_FRAMES:])]


Duration = timedelta | float | int
"""A duration given as a :class:`~datetime.timedelta` or as seconds."""

MAX_DURATION = 100 * 365.25 * 86_400
"""Longest duration accepted anywhere (timestamps past it stop being printable)."""


def to_seconds(value: Duration, *, what: str, allow_zero: bool = False) -> float:
    """Convert a duration to seconds, refusing negative (and, by default, zero) values.

    Raises:
        ValueError: naming ``what`` when the duration is not positive.
        TypeError: when the value is neither a timedelta nor a number.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{what} must be a timedelta or a number of seconds, not {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero) or seconds != seconds:
        raise ValueError(f"{what} must be greater than zero, got {value!r}")
    if seconds > MAX_DURATION:
        raise ValueError(f"{what} must be at most 100 years, got {value!r}")
    return seconds


class ExecutionStatus(enum.StrEnum):
    """Lifecycle of an execution. ``RUNNING`` includes suspended on a timer/callback/child."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"
    TIMED_OUT = "TIMED_OUT"

    @property
    def finished(self) -> bool:
        """True for every status but ``RUNNING``."""
        return self is not ExecutionStatus.RUNNING


class StepSemantics(enum.StrEnum):
    """What happens to a step attempt that a crash interrupted.

    ``AT_LEAST_ONCE_PER_RETRY`` runs the attempt again; ``AT_MOST_ONCE_PER_RETRY`` makes the
    start durable first and counts an interrupted attempt as failed (``StepInterruptedError``).
    """

    AT_LEAST_ONCE_PER_RETRY = "AT_LEAST_ONCE_PER_RETRY"
    AT_MOST_ONCE_PER_RETRY = "AT_MOST_ONCE_PER_RETRY"


class Jitter(enum.StrEnum):
    """How much randomness a retry delay gets: none, up to half, or up to all of it."""

    NONE = "NONE"
    HALF = "HALF"
    FULL = "FULL"


class ErrorInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    """A recorded error: the exception's type name, its message and the formatted stack."""

    type: str
    message: str
    stack: list[str] = msgspec.field(default_factory=list)

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        """Record ``exc``; durable errors keep the type and message they carry."""
        error_type = getattr(exc, "error_type", None)
        message = getattr(exc, "message", None)
        if not isinstance(error_type, str):
            error_type = type(exc).__name__
        if not isinstance(message, str):
            message = str(exc)
        if len(message) > MAX_ERROR_MESSAGE:
            message = message[:MAX_ERROR_MESSAGE] + "... (truncated)"
        return cls(type=error_type, message=message, stack=_user_frames(exc))


RetryOn = tuple[type[BaseException], ...] | Callable[[BaseException], bool]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed step is retried.

    Args:
        max_attempts: attempts in all, the first one included (1 = no retry).
        initial_delay: delay before the second attempt.
        max_delay: cap on any delay.
        backoff_rate: multiplier applied per attempt.
        jitter: randomness applied to each delay.
        retry_on: exception types to retry, or a predicate ``(exc) -> bool``.

    Example::

        RetryPolicy(max_attempts=5, initial_delay=timedelta(seconds=1), retry_on=(TimeoutError,))
    """

    max_attempts: int = 6
    initial_delay: Duration = timedelta(seconds=5)
    max_delay: Duration = timedelta(seconds=60)
    backoff_rate: float = 2.0
    jitter: Jitter = Jitter.FULL
    retry_on: RetryOn = (Exception,)

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, got {attempts!r}")
        object.__setattr__(self, "jitter", Jitter(self.jitter))
        retry_on = self.retry_on
        if isinstance(retry_on, type) and issubclass(retry_on, BaseException):
            object.__setattr__(self, "retry_on", (retry_on,))  # a single type, as a tuple
        elif isinstance(retry_on, tuple):
            for item in retry_on:
                if not (isinstance(item, type) and issubclass(item, BaseException)):
                    raise TypeError(f"RetryPolicy.retry_on must hold exception types, got {item!r}")
        to_seconds(self.initial_delay, what="RetryPolicy.initial_delay", allow_zero=True)
        to_seconds(self.max_delay, what="RetryPolicy.max_delay", allow_zero=True)
        if self.backoff_rate < 1:
            raise ValueError(f"RetryPolicy.backoff_rate must be >= 1, got {self.backoff_rate!r}")
        if not callable(self.retry_on) and not isinstance(self.retry_on, tuple):
            raise TypeError("RetryPolicy.retry_on must be a tuple of exception types or a callable")

    @classmethod
    def default(cls) -> RetryPolicy:
        """6 attempts, 5 s initial delay, 60 s cap, backoff x2, full jitter."""
        return cls()

    @classmethod
    def none(cls) -> RetryPolicy:
        """A single attempt: the first failure is final."""
        return cls(max_attempts=1)

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` is one this policy retries (attempt counts aside)."""
        if isinstance(self.retry_on, tuple):
            return isinstance(exc, self.retry_on)
        return bool(self.retry_on(exc))


@dataclass(frozen=True, slots=True)
class Execution(Generic[T]):
    """A snapshot of one execution, as ``engine.get`` and ``engine.list`` return it."""

    execution_id: str
    workflow: str
    status: ExecutionStatus
    input: Any
    result: T | None
    error: ErrorInfo | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    parent_id: str | None
