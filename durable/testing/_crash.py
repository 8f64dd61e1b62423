"""Crash injection: a worker "dies" at a named operation, and another worker takes over.

The runner's engine keeps its executions in a :class:`CrashingStore`, an in-memory store
that behaves exactly like :class:`~durable.stores.memory.MemoryStore` until a
:class:`CrashRule` matches a checkpoint. Then the checkpoint is written or lost (depending on
the crash point), the execution's lease passes to a dead worker, and the checkpoint call
fails with :class:`~durable.errors.LeaseLostError`: the invocation stops at once and writes
nothing more, as if its process had been killed. When the dead worker's lease expires (the
runner skips the time), the engine claims the execution as a takeover, records
``InvocationCompleted`` with ``Runtime.ExitError`` and replays it: the real recovery path,
``StepInterruptedError`` for an ``AT_MOST_ONCE`` step included. The engine itself is not
changed in any way.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from types import TracebackType

from durable.errors import LeaseLostError
from durable.events import Event, EventType, decode_event
from durable.stores.base import Checkpoint
from durable.stores.memory import MemoryStore

__all__ = ["DEAD_WORKER", "CrashPoint", "CrashRule", "CrashingStore"]

DEAD_WORKER = "durable-testing:crashed-worker"
"""The lease owner an execution passes to when its worker crashes."""

_STARTS = frozenset(
    {
        EventType.STEP_STARTED,
        EventType.WAIT_STARTED,
        EventType.CALLBACK_STARTED,
        EventType.CONTEXT_STARTED,
        EventType.CHAINED_INVOKE_STARTED,
    }
)
_OUTCOMES = frozenset(
    {
        EventType.STEP_SUCCEEDED,
        EventType.STEP_FAILED,
        EventType.WAIT_SUCCEEDED,
        EventType.WAIT_CANCELLED,
        EventType.CALLBACK_SUCCEEDED,
        EventType.CALLBACK_FAILED,
        EventType.CALLBACK_TIMED_OUT,
        EventType.CONTEXT_SUCCEEDED,
        EventType.CONTEXT_FAILED,
        EventType.CHAINED_INVOKE_SUCCEEDED,
        EventType.CHAINED_INVOKE_FAILED,
    }
)


class CrashPoint(enum.StrEnum):
    """Where, around the named operation, the worker dies.

    A crash *after* a checkpoint that also ends the invocation (the ``WaitStarted`` of a
    wait that suspends the execution, say) changes nothing: the worker had let go already.
    """

    AFTER_START = "after_start"
    """Right after the operation's start is durable, before its body runs: for an
    ``AT_MOST_ONCE_PER_RETRY`` step the body never runs and the resumed execution records
    ``StepInterruptedError``. An ``AT_LEAST_ONCE_PER_RETRY`` step's start is only written
    together with its result, so there the crash loses both (as ``BEFORE_RESULT``)."""
    BEFORE_RESULT = "before_result"
    """The operation ran, but the worker dies before its result (or failure) is durable:
    an ``AT_LEAST_ONCE`` attempt runs again after the takeover; an ``AT_MOST_ONCE`` one
    counts as interrupted."""
    AFTER_RESULT = "after_result"
    """The result is durable, then the worker dies: the resumed execution replays it
    without running the operation again."""


@dataclass(eq=False)
class CrashRule:
    """One planned crash (what ``runner.crash_at`` returns). It fires at most once.

    Also a context manager: leaving the ``with`` block disarms it if it has not fired.

    Attributes:
        operation: the operation name it waits for.
        point: see :class:`CrashPoint`.
        attempt: only this step attempt (``None``: the first one that matches).
        execution_id: only in this execution (``None``: any).
        fired_in: the execution it crashed, once it fired.
    """

    operation: str
    point: CrashPoint
    attempt: int | None = None
    execution_id: str | None = None
    fired_in: str | None = field(default=None, init=False)
    _rules: list[CrashRule] = field(default_factory=list, init=False, repr=False)

    @property
    def fired(self) -> bool:
        """Whether the crash happened."""
        return self.fired_in is not None

    def cancel(self) -> None:
        """Disarm it (nothing happens if it already fired)."""
        if self in self._rules:
            self._rules.remove(self)

    def __enter__(self) -> CrashRule:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def match(self, execution_id: str, events: list[Event]) -> bool | None:
        """Whether this checkpoint crashes the worker: ``None`` (no), ``True`` (after
        writing it) or ``False`` (the checkpoint is lost)."""
        if self.execution_id not in (None, execution_id):
            return None
        for event in events:
            if event.name != self.operation or event.id is None:
                continue
            if self.attempt is not None and event.attempt not in (None, self.attempt):
                continue
            if self.point is CrashPoint.AFTER_START and event.t in _STARTS:
                ended = any(
                    o.id == event.id and o.t in _OUTCOMES and o.attempt == event.attempt
                    for o in events
                )
                return not ended
            if self.point is not CrashPoint.AFTER_START and event.t in _OUTCOMES:
                return self.point is CrashPoint.AFTER_RESULT
        return None


class CrashingStore(MemoryStore):
    """A :class:`MemoryStore` that crashes the writing worker when a :class:`CrashRule`
    matches a checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.rules: list[CrashRule] = []

    def add_rule(self, rule: CrashRule) -> CrashRule:
        """Arm ``rule``."""
        rule._rules = self.rules
        self.rules.append(rule)
        return rule

    async def commit(self, checkpoint: Checkpoint) -> None:
        """Commit, unless an armed rule says the worker dies here (see the module doc)."""
        if not self.rules:
            return await super().commit(checkpoint)
        execution_id = checkpoint.lease.execution_id
        events = [decode_event(data) for data in checkpoint.events]
        for rule in self.rules:
            write = rule.match(execution_id, events)
            if write is not None:
                break
        else:
            return await super().commit(checkpoint)
        if write:
            await super().commit(checkpoint)
            if checkpoint.release or checkpoint.finish is not None:
                self._fire(rule, execution_id)  # it let go first: nothing left to take over
                return None
        else:
            row = await self.get_execution(execution_id)
            lease = checkpoint.lease
            if row is None or (row.lease_owner, row.lease_epoch) != (lease.owner, lease.epoch):
                return await super().commit(checkpoint)  # refused as usual (stale lease)
        self._fire(rule, execution_id)
        self._hand_to_dead_worker(execution_id, checkpoint.now)
        raise LeaseLostError(
            f"simulated crash (crash_at {rule.operation!r}, {rule.point.value}): the worker "
            f"running execution {execution_id!r} died; another one takes it over when its "
            "lease expires"
        )

    def _fire(self, rule: CrashRule, execution_id: str) -> None:
        rule.fired_in = execution_id
        rule.cancel()

    def _hand_to_dead_worker(self, execution_id: str, now: float) -> None:
        # The lease stays in place with its expiry, held by a worker that will never renew
        # or release it: exactly what a killed process leaves behind. Bumping the epoch
        # fences out anything the crashed invocation might still try to write.
        row = self._rows[execution_id]
        row.lease_owner = DEAD_WORKER
        row.lease_epoch += 1
        if row.lease_expires is None:
            row.lease_expires = now
        row.wake_at = row.lease_expires
