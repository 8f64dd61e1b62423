"""durable: asyncio-native, embedded durable execution for Python.

Decorate an ``async def`` with ``@engine.workflow``, await ``ctx.step``/``ctx.wait`` inside
it, and run it inside ``async with engine``: every step is checkpointed in a SQLite event
log, and after a crash or restart the workflow is replayed from the top, skipping what is
already recorded.
"""

from durable.callback import Callback
from durable.clock import Clock, SystemClock, VirtualClock
from durable.completion import (
    BatchItem,
    BatchItemStatus,
    BatchResult,
    BatchStatus,
    Branch,
    Completion,
    CompletionReason,
)
from durable.condition import poll_until
from durable.context import DurableContext
from durable.engine import Engine
from durable.errors import (
    CallbackAlreadyCompletedError,
    CallbackError,
    CallbackFailedError,
    CallbackNotFoundError,
    CallbackTimeoutError,
    ChildContextError,
    DurableError,
    ExecutionAlreadyExistsError,
    ExecutionFailedError,
    ExecutionNotFoundError,
    ExecutionNotRunningError,
    InvokeError,
    LeaseLostError,
    NonDeterministicError,
    NonDurableAwaitError,
    PayloadTooLargeError,
    SerializationError,
    StepError,
    StepInterruptedError,
    StepTimeoutError,
    StoreError,
    WaitForConditionError,
    WorkflowNotFoundError,
)
from durable.events import EventType, HistoryEvent, SubType
from durable.handle import ExecutionHandle
from durable.types import (
    ErrorInfo,
    Execution,
    ExecutionStatus,
    Jitter,
    RetryPolicy,
    StepSemantics,
)
from durable.workflow import Workflow

__version__ = "0.1.0"

__all__ = [
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
