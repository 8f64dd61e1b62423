"""``ExecutionHandle``: a reference to one execution, returned by ``engine.start``."""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from durable.types import Execution, ExecutionStatus

__all__ = ["ExecutionHandle"]

T = TypeVar("T")


class _Engine(Protocol):
    async def get(self, execution_id: str) -> Execution[Any]: ...

    async def _result(self, execution_id: str, timeout: float | None) -> Any: ...


class ExecutionHandle(Generic[T]):
    """Await an execution's result or look at its status.

    Attributes:
        execution_id: the execution's id.
    """

    __slots__ = ("_engine", "execution_id")

    def __init__(self, engine: _Engine, execution_id: str) -> None:
        self._engine = engine
        self.execution_id = execution_id

    async def result(self, timeout: float | None = None) -> T:
        """Wait until the execution ends and return its result.

        Args:
            timeout: wall-clock seconds to wait at most (``TimeoutError`` after that).

        Raises:
            ExecutionFailedError: it failed, stopped or timed out; carries the recorded
                :class:`~durable.types.ErrorInfo` (type and message verbatim).
        """
        result: T = await self._engine._result(self.execution_id, timeout)
        return result

    async def status(self) -> ExecutionStatus:
        """The execution's current status."""
        return (await self._engine.get(self.execution_id)).status

    def __repr__(self) -> str:
        return f"<ExecutionHandle {self.execution_id!r}>"
