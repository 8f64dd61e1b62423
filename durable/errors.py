"""Every error ``durable`` raises, in one tree.

::

    DurableError
    ├── NonDeterministicError        replayed code no longer matches its recorded history
    ├── StepError                    a step failed for good (carries the original type and message)
    │   ├── StepTimeoutError         one attempt ran past the step's ``timeout``
    │   ├── StepInterruptedError     an AT_MOST_ONCE attempt was cut short by a crash
    │   └── SerializationError       a value msgspec cannot encode (never retried)
    │       └── PayloadTooLargeError a value over the configured payload limit
    ├── CallbackError
    │   ├── CallbackTimeoutError     ``Callback.Timeout`` or ``Callback.Heartbeat``
    │   └── CallbackFailedError      the outside system reported a failure
    ├── WaitForConditionError
    ├── ChildContextError
    ├── InvokeError
    ├── ExecutionFailedError         ``handle.result()`` of a failed execution
    ├── ExecutionNotFoundError
    ├── ExecutionAlreadyExistsError
    ├── ExecutionNotRunningError     stop() of an execution that already ended
    ├── WorkflowNotFoundError
    ├── CallbackNotFoundError
    ├── CallbackAlreadyCompletedError
    ├── NonDurableAwaitError         the workflow awaited something that is not a durable primitive
    └── StoreError                   the database refused (locked, full, foreign, too new)
        └── LeaseLostError           another worker owns the execution now

Errors that describe an operation's outcome carry ``error_type`` (the original exception's
type name, e.g. ``"ValueError"``) and ``message`` so they read the same on every replay.

Internal control flow (an invocation suspending) uses :class:`BaseException` subclasses that
live in the engine and never reach user code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from durable.types import ErrorInfo

__all__ = [
    "CallbackAlreadyCompletedError",
    "CallbackError",
    "CallbackFailedError",
    "CallbackNotFoundError",
    "CallbackTimeoutError",
    "ChildContextError",
    "DurableError",
    "ExecutionAlreadyExistsError",
    "ExecutionFailedError",
    "ExecutionNotFoundError",
    "ExecutionNotRunningError",
    "InvokeError",
    "LeaseLostError",
    "NonDeterministicError",
    "NonDurableAwaitError",
    "PayloadTooLargeError",
    "SerializationError",
    "StepError",
    "StepInterruptedError",
    "StepTimeoutError",
    "StoreError",
    "WaitForConditionError",
    "WorkflowNotFoundError",
]


class DurableError(Exception):
    """Base class of every error raised by ``durable``.

    Attributes:
        error_type: the type name recorded for this error (the original exception's type
            for operation failures, otherwise this class's name).
        message: the recorded message, verbatim.
    """

    def __init__(self, message: str = "", *, error_type: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.error_type = error_type or type(self).__name__


class NonDeterministicError(DurableError):
    """The workflow code called a different operation than the history recorded at that id."""


class StepError(DurableError):
    """A step failed after its retry policy gave up; carries the original type and message."""


class StepTimeoutError(StepError):
    """One attempt of a step ran longer than the step's ``timeout``."""


class StepInterruptedError(StepError):
    """An ``AT_MOST_ONCE_PER_RETRY`` attempt was started but its process died before it ended."""


class SerializationError(StepError):
    """A value could not be encoded with msgspec (or decoded to its annotated type)."""


class PayloadTooLargeError(SerializationError):
    """An encoded value is larger than the engine's payload limit; nothing was written."""


class CallbackError(DurableError):
    """Base class of callback outcomes that raise in the workflow."""


class CallbackTimeoutError(CallbackError):
    """A callback expired; ``error_type`` is ``Callback.Timeout`` or ``Callback.Heartbeat``."""


class CallbackFailedError(CallbackError):
    """The outside system completed the callback with a failure (its type and message)."""


class WaitForConditionError(DurableError):
    """A condition poll gave up (too many attempts) or its check raised."""


class ChildContextError(DurableError):
    """An error escaped a child context; carries the original type and message."""


class InvokeError(DurableError):
    """A chained child execution failed; carries the child's error type and message."""


class ExecutionFailedError(DurableError):
    """Raised by ``handle.result()`` for an execution that did not succeed.

    Attributes:
        error: the recorded :class:`~durable.types.ErrorInfo`.
        status: the execution's final status (``FAILED``, ``STOPPED`` or ``TIMED_OUT``).
    """

    def __init__(self, error: ErrorInfo, *, status: str = "FAILED") -> None:
        super().__init__(error.message, error_type=error.type)
        self.error = error
        self.status = status


class ExecutionNotFoundError(DurableError):
    """No execution has this id."""


class ExecutionAlreadyExistsError(DurableError):
    """An execution with this id exists with a different workflow or input."""


class ExecutionNotRunningError(DurableError):
    """The execution already ended (succeeded, failed, stopped or timed out)."""


class WorkflowNotFoundError(DurableError):
    """No workflow is registered under this name on this engine."""


class CallbackNotFoundError(DurableError):
    """No callback has this id."""


class CallbackAlreadyCompletedError(DurableError):
    """The callback already succeeded, failed or timed out."""


class NonDurableAwaitError(DurableError):
    """The workflow awaited something that is not a durable primitive (wrap it in ``ctx.step``)."""


class StoreError(DurableError):
    """The store could not do what was asked: locked, full, not ours, or from a newer version."""


class LeaseLostError(StoreError):
    """This worker's lease on an execution was taken over; its writes are refused (fencing)."""
