"""The public surface is part of the contract: changing it must be deliberate."""

from __future__ import annotations

import durable
import durable.errors

EXPECTED = [
    "BatchItem",
    "BatchItemStatus",
    "BatchResult",
    "BatchStatus",
    "Branch",
    "Callback",
    "CallbackAlreadyCompletedError",
    "CallbackError",
    "CallbackFailedError",
    "CallbackNotFoundError",
    "CallbackTimeoutError",
    "ChildContextError",
    "Clock",
    "Completion",
    "CompletionReason",
    "DurableContext",
    "DurableError",
    "Engine",
    "ErrorInfo",
    "EventType",
    "Execution",
    "ExecutionAlreadyExistsError",
    "ExecutionFailedError",
    "ExecutionHandle",
    "ExecutionNotFoundError",
    "ExecutionNotRunningError",
    "ExecutionStatus",
    "HistoryEvent",
    "InvokeError",
    "Jitter",
    "LeaseLostError",
    "NonDeterministicError",
    "NonDurableAwaitError",
    "PayloadTooLargeError",
    "RetryPolicy",
    "SerializationError",
    "StepError",
    "StepInterruptedError",
    "StepSemantics",
    "StepTimeoutError",
    "StoreError",
    "SubType",
    "SystemClock",
    "VirtualClock",
    "WaitForConditionError",
    "Workflow",
    "WorkflowNotFoundError",
    "__version__",
    "poll_until",
]


def test_all_is_pinned_and_sorted() -> None:
    assert durable.__all__ == EXPECTED
    assert sorted(durable.__all__) == durable.__all__


def test_every_public_name_exists_and_is_documented() -> None:
    for name in durable.__all__:
        obj = getattr(durable, name)
        if name != "__version__" and not isinstance(obj, type(durable.Engine.__init__)):
            assert getattr(obj, "__doc__", None), f"{name} has no docstring"


def test_errors_form_one_tree() -> None:
    for name in durable.errors.__all__:
        cls = getattr(durable.errors, name)
        assert issubclass(cls, durable.DurableError)
        assert getattr(durable, name) is cls
    assert issubclass(durable.SerializationError, durable.StepError)
    assert issubclass(durable.CallbackTimeoutError, durable.CallbackError)


def test_an_engine_can_be_built_at_import_time_outside_any_event_loop() -> None:
    engine = durable.Engine(":memory:")

    @engine.workflow
    async def wf(ctx: durable.DurableContext) -> None: ...

    assert engine.workflows == {"wf": wf}
