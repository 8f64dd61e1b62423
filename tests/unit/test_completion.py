"""Batch completion rules (DESIGN.md section 2, Batches): pure, no event loop."""

from __future__ import annotations

import pytest

from durable import ChildContextError
from durable.completion import (
    BatchItem,
    BatchItemStatus,
    BatchResult,
    BatchStatus,
    Branch,
    Completion,
    CompletionReason,
    completion_reason,
)
from durable.types import ErrorInfo

FAILED = CompletionReason.FAILURE_TOLERANCE_EXCEEDED
ALL = CompletionReason.ALL_COMPLETED
MIN = CompletionReason.MIN_SUCCESSFUL_REACHED


def reason(c: Completion, total: int, ok: int, bad: int) -> CompletionReason | None:
    return completion_reason(c, total=total, succeeded=ok, failed=bad)


def test_no_criteria_is_fail_fast() -> None:
    assert reason(Completion(), 5, 2, 0) is None
    assert reason(Completion(), 5, 2, 1) is FAILED
    assert reason(Completion.all_successful(), 5, 0, 1) is FAILED
    assert reason(Completion(), 2, 2, 0) is ALL


def test_tolerance_is_exceeded_only_strictly_over_the_limit() -> None:
    c = Completion(tolerated_failure_count=2)
    assert reason(c, 10, 0, 2) is None
    assert reason(c, 10, 0, 3) is FAILED
    p = Completion(tolerated_failure_percentage=20)
    assert reason(p, 10, 0, 2) is None  # 20 % of the total, not over it
    assert reason(p, 10, 1, 3) is FAILED
    assert reason(p, 10, 8, 2) is ALL


def test_only_min_successful_tolerates_any_number_of_failures() -> None:
    c = Completion(min_successful=2)
    assert reason(c, 10, 1, 7) is None
    assert reason(c, 10, 2, 7) is MIN
    assert reason(Completion.first_successful(), 3, 0, 2) is None
    assert reason(Completion.first_successful(), 3, 1, 0) is MIN
    both = Completion(min_successful=2, tolerated_failure_count=1)
    assert reason(both, 10, 1, 2) is FAILED


def test_reason_precedence() -> None:
    # failures over the limit win over everything else
    assert reason(Completion(min_successful=1, tolerated_failure_count=0), 2, 1, 1) is FAILED
    # the last item completing and reaching min_successful: ALL_COMPLETED
    assert reason(Completion(min_successful=3), 3, 3, 0) is ALL
    assert reason(Completion.all_completed(), 3, 1, 2) is ALL
    assert reason(Completion(), 0, 0, 0) is ALL


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_successful": 0},
        {"tolerated_failure_count": -1},
        {"tolerated_failure_percentage": 101},
        {"tolerated_failure_percentage": -5},
    ],
)
def test_invalid_completions_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Completion(**kwargs)  # type: ignore[arg-type]


def test_min_successful_over_the_item_count_is_refused() -> None:
    with pytest.raises(ValueError, match="min_successful=4 is more than the 3 items"):
        Completion(min_successful=4).check(3)


def test_batch_result_api_and_roundtrip() -> None:
    err = ErrorInfo(type="ValueError", message="bad item")
    result: BatchResult[int] = BatchResult(
        all=[
            BatchItem(0, BatchItemStatus.SUCCEEDED, 10),
            BatchItem(1, BatchItemStatus.FAILED, error=err),
            BatchItem(2, BatchItemStatus.STARTED),
        ],
        completion_reason=FAILED,
    )
    assert result.status is BatchStatus.FAILED
    assert result.get_results() == [10]
    assert result.get_errors() == [err]
    assert (result.success_count, result.failure_count, result.total_count) == (1, 1, 3)
    assert result.has_failure
    with pytest.raises(ChildContextError) as info:
        result.throw_if_error()
    assert (info.value.error_type, info.value.message) == ("ValueError", "bad item")
    assert BatchResult.from_builtins(result.to_builtins()) == result
    BatchResult(all=[BatchItem(0, BatchItemStatus.SUCCEEDED, 1)]).throw_if_error()


def test_branches_must_be_async() -> None:
    def not_async(ctx: object) -> None: ...

    with pytest.raises(TypeError, match="async def"):
        Branch(not_async)  # type: ignore[arg-type]
