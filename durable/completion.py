"""Value types of ``ctx.parallel`` / ``ctx.map``: when a batch is done, and what it returns."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from durable.errors import ChildContextError
from durable.types import ErrorInfo

if TYPE_CHECKING:
    from durable.context import DurableContext

__all__ = [
    "BatchItem",
    "BatchItemStatus",
    "BatchResult",
    "BatchStatus",
    "Branch",
    "Completion",
    "CompletionReason",
    "completion_reason",
]

T = TypeVar("T")


class CompletionReason(enum.StrEnum):
    """Why a batch stopped."""

    ALL_COMPLETED = "ALL_COMPLETED"
    MIN_SUCCESSFUL_REACHED = "MIN_SUCCESSFUL_REACHED"
    FAILURE_TOLERANCE_EXCEEDED = "FAILURE_TOLERANCE_EXCEEDED"


class BatchItemStatus(enum.StrEnum):
    """Where one item of a batch ended (``STARTED``: still running when the batch stopped)."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STARTED = "STARTED"


class BatchStatus(enum.StrEnum):
    """A batch failed when any of its items failed."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class Completion:
    """When a batch is complete.

    Args:
        min_successful: stop once this many items succeeded (then any number of failures
            is tolerated, unless a tolerance below is also set).
        tolerated_failure_count: stop (FAILURE_TOLERANCE_EXCEEDED) once failures are over
            this count.
        tolerated_failure_percentage: stop once failures are over this percentage of all
            items.

    With no criteria at all the batch is fail-fast: it stops at the first failure.
    Tolerance is exceeded only when strictly over the limit.
    """

    min_successful: int | None = None
    tolerated_failure_count: int | None = None
    tolerated_failure_percentage: float | None = None

    def __post_init__(self) -> None:
        if self.min_successful is not None and self.min_successful < 1:
            raise ValueError(f"min_successful must be >= 1, got {self.min_successful!r}")
        if self.tolerated_failure_count is not None and self.tolerated_failure_count < 0:
            raise ValueError(
                f"tolerated_failure_count must be >= 0, got {self.tolerated_failure_count!r}"
            )
        pct = self.tolerated_failure_percentage
        if pct is not None and not 0 <= pct <= 100:
            raise ValueError(f"tolerated_failure_percentage must be within 0-100, got {pct!r}")

    @classmethod
    def all_successful(cls) -> Completion:
        """Every item must succeed: stop at the first failure (``parallel``'s default)."""
        return cls(tolerated_failure_count=0)

    @classmethod
    def all_completed(cls) -> Completion:
        """Run every item whatever fails."""
        return cls(tolerated_failure_percentage=100)

    @classmethod
    def first_successful(cls) -> Completion:
        """Stop at the first success (any number of failures before it is tolerated)."""
        return cls(min_successful=1)

    def check(self, total: int) -> None:
        """Refuse a configuration that cannot work for ``total`` items."""
        if self.min_successful is not None and self.min_successful > total:
            raise ValueError(f"min_successful={self.min_successful} is more than the {total} items")

    def _failure_exceeded(self, total: int, failed: int) -> bool:
        count, pct = self.tolerated_failure_count, self.tolerated_failure_percentage
        if count is None and pct is None:
            return self.min_successful is None and failed > 0
        if count is not None and failed > count:
            return True
        return pct is not None and total > 0 and failed * 100 / total > pct


def completion_reason(
    completion: Completion, *, total: int, succeeded: int, failed: int
) -> CompletionReason | None:
    """The reason a batch is complete now, or ``None`` (pure; precedence as DESIGN.md)."""
    if completion._failure_exceeded(total, failed):
        return CompletionReason.FAILURE_TOLERANCE_EXCEEDED
    if succeeded + failed >= total:
        return CompletionReason.ALL_COMPLETED
    if completion.min_successful is not None and succeeded >= completion.min_successful:
        return CompletionReason.MIN_SUCCESSFUL_REACHED
    return None


@dataclass(frozen=True, slots=True)
class BatchItem(Generic[T]):
    """One item of a batch: its index, how it ended, its result or its error."""

    index: int
    status: BatchItemStatus
    result: T | None = None
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class BatchResult(Generic[T]):
    """What ``ctx.parallel`` and ``ctx.map`` return; item failures never raise by themselves.

    Attributes:
        all: the items that started, in index order.
        completion_reason: why the batch stopped.
    """

    all: list[BatchItem[T]] = field(default_factory=list)
    completion_reason: CompletionReason = CompletionReason.ALL_COMPLETED

    @property
    def status(self) -> BatchStatus:
        """``FAILED`` when any item failed."""
        return BatchStatus.FAILED if self.has_failure else BatchStatus.SUCCEEDED

    def succeeded(self) -> list[BatchItem[T]]:
        """The items that succeeded."""
        return [i for i in self.all if i.status is BatchItemStatus.SUCCEEDED]

    def failed(self) -> list[BatchItem[T]]:
        """The items that failed."""
        return [i for i in self.all if i.status is BatchItemStatus.FAILED]

    def get_results(self) -> list[T]:
        """Results of the items that succeeded, in index order."""
        return [i.result for i in self.succeeded()]  # type: ignore[misc]

    def get_errors(self) -> list[ErrorInfo]:
        """Errors of the items that failed, in index order."""
        return [i.error for i in self.failed() if i.error is not None]

    def throw_if_error(self) -> None:
        """Raise the first failed item's error as ``ChildContextError`` (type and message kept)."""
        for item in self.failed():
            assert item.error is not None
            raise ChildContextError(item.error.message, error_type=item.error.type)

    @property
    def success_count(self) -> int:
        """How many items succeeded."""
        return len(self.succeeded())

    @property
    def failure_count(self) -> int:
        """How many items failed."""
        return len(self.failed())

    @property
    def total_count(self) -> int:
        """How many items started (never-started items are not counted)."""
        return len(self.all)

    @property
    def has_failure(self) -> bool:
        """Whether any item failed."""
        return any(i.status is BatchItemStatus.FAILED for i in self.all)

    def to_builtins(self) -> dict[str, Any]:
        """A msgpack/JSON-friendly form (how the batch's result is checkpointed)."""
        return {
            "completionReason": self.completion_reason.value,
            "items": [
                {
                    "index": i.index,
                    "status": i.status.value,
                    "result": i.result,
                    "error": None if i.error is None else [i.error.type, i.error.message],
                }
                for i in self.all
            ],
        }

    @classmethod
    def from_builtins(cls, data: dict[str, Any]) -> BatchResult[Any]:
        """Rebuild a checkpointed batch result."""
        items = [
            BatchItem(
                index=item["index"],
                status=BatchItemStatus(item["status"]),
                result=item["result"],
                error=None if item["error"] is None else ErrorInfo(*item["error"]),
            )
            for item in data["items"]
        ]
        return cls(all=items, completion_reason=CompletionReason(data["completionReason"]))


@dataclass(frozen=True, slots=True)
class Branch(Generic[T]):
    """A named branch for ``ctx.parallel``: ``Branch(fn, name="charge-card")``."""

    fn: Callable[[DurableContext], Coroutine[Any, Any, T]]
    name: str | None = None

    def __post_init__(self) -> None:
        if not inspect.iscoroutinefunction(self.fn):
            raise TypeError(f"a parallel branch must be an 'async def fn(ctx)', got {self.fn!r}")
