"""``ctx.wait_for_condition``: poll a check as checkpointed attempts until a strategy stops.

Each ``check(state)`` attempt records ``StepStarted`` / ``StepSucceeded`` (sub type
``WaitForCondition``) with the new state as its result; when the strategy asks to continue
the ``StepSucceeded`` carries the delay, and the execution suspends until it is due. A
``check`` that raises records ``StepFailed`` and ends the poll with
:class:`~durable.errors.WaitForConditionError` (checks are not retried).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from durable.errors import SerializationError, WaitForConditionError
from durable.events import EventType, SubType
from durable.operation import Operation, Outcome, Raise, Value
from durable.replay import OpRecord, OpStatus
from durable.step import Done, Interrupted, Run, Sleep, call_user_fn, cancelled_by_us, decide
from durable.types import Duration, ErrorInfo, StepSemantics, to_seconds

if TYPE_CHECKING:
    from durable.context import DurableContext
    from durable.invocation import Fiber, Invocation

__all__ = ["Strategy", "WaitForConditionOp", "poll_until"]

S = TypeVar("S")

Strategy = Callable[[S, int], "timedelta | float | None"]
"""``strategy(state, attempt) -> delay | None``: ``None`` stops (the state is the result)."""


def poll_until(
    predicate: Callable[[Any], bool],
    *,
    delay: Duration = timedelta(seconds=5),
    max_attempts: int = 60,
    backoff_rate: float = 1.0,
    max_delay: Duration | None = None,
) -> Strategy[Any]:
    """A strategy that stops once ``predicate(state)`` is true.

    The n-th delay is ``delay * backoff_rate ** (n - 1)``, capped at ``max_delay``
    (``backoff_rate=1`` polls at a fixed rate).

    Raises (from the strategy, so from ``wait_for_condition``):
        WaitForConditionError: still not true after ``max_attempts`` checks.

    Example::

        done = await ctx.wait_for_condition(
            check_job, initial_state={"id": job_id},
            strategy=poll_until(lambda s: s["status"] == "done", delay=10, backoff_rate=2),
        )
    """
    base = to_seconds(delay, what="poll_until delay")
    cap = None if max_delay is None else to_seconds(max_delay, what="poll_until max_delay")
    if max_attempts < 1:
        raise ValueError(f"poll_until max_attempts must be >= 1, got {max_attempts!r}")
    if backoff_rate < 1:
        raise ValueError(f"poll_until backoff_rate must be >= 1, got {backoff_rate!r}")

    def strategy(state: Any, attempt: int) -> float | None:
        if predicate(state):
            return None
        if attempt >= max_attempts:
            raise WaitForConditionError(
                f"condition still not met after {max_attempts} attempts (last state: {state!r})"
            )
        wait = base * backoff_rate ** (attempt - 1)
        return wait if cap is None else min(wait, cap)

    return strategy


class WaitForConditionOp(Operation[S]):
    """The awaitable ``ctx.wait_for_condition`` returns."""

    kind = "Step"
    default_sub_type = SubType.WAIT_FOR_CONDITION.value
    __slots__ = ("check", "initial_state", "strategy")

    def __init__(
        self,
        ctx: DurableContext,
        check: Callable[[Any], Any],
        *,
        initial_state: Any,
        strategy: Strategy[Any],
        name: str | None,
    ) -> None:
        super().__init__(ctx, name)
        self.check = check
        self.initial_state = initial_state
        self.strategy = strategy

    @property
    def label(self) -> str:
        """How errors name this poll."""
        return f"condition {self.name!r}" if self.name else f"condition {self.op_id}"

    def _state(self, inv: Invocation, record: OpRecord | None, attempt: int) -> Any:
        if attempt == 1 or record is None or record.result is None:
            return self.initial_state
        return inv.serde.decode(record.result, what=f"state of {self.label}")

    def resolve(self, inv: Invocation, fiber: Fiber) -> Outcome | None:
        """Replay the record, or run / schedule the next check."""
        record = self.record_for(inv)
        decision = decide(record, StepSemantics.AT_LEAST_ONCE_PER_RETRY, inv.now())
        if isinstance(decision, Done):
            assert record is not None
            if record.status is OpStatus.SUCCEEDED:
                return Value(self._state(inv, record, record.attempt + 1), record.ended_ts)
            assert record.error is not None
            error = WaitForConditionError(record.error.message, error_type=record.error.type)
            return Raise(error, record.ended_ts)
        if isinstance(decision, Sleep):
            inv.block(fiber, self, decision.until)
            return None
        assert not isinstance(decision, Interrupted)
        assert isinstance(decision, Run)
        if not inv.accepting_work:
            inv.park(fiber, self)
            return None
        state = self._state(inv, record, decision.attempt)
        if decision.record_start:
            inv.record(self.event(EventType.STEP_STARTED, inv.now(), attempt=decision.attempt))
        inv.start_task(fiber, self, self._attempt(state, decision.attempt))
        return None

    async def _attempt(self, state: Any, attempt: int) -> tuple[int, bool, Any]:
        try:
            return attempt, True, await call_user_fn(self.check, (state,))
        except Exception as exc:
            return attempt, False, exc
        except anyio.get_cancelled_exc_class() as exc:
            if cancelled_by_us():
                raise
            return attempt, False, exc  # raised by the check itself: a failed check

    def on_arrival(self, inv: Invocation, fiber: Fiber, payload: Any) -> Outcome | None:
        """A check finished: record the new state and ask the strategy what next."""
        attempt, ok, value = payload
        now = inv.now()
        failure: BaseException | None = None if ok else value
        if failure is None:
            try:
                data, state = inv.serde.roundtrip(value, Any, what=f"state of {self.label}")
                delay = self.strategy(state, attempt)
                seconds = (
                    None
                    if delay is None
                    else to_seconds(delay, what="strategy delay", allow_zero=True)
                )
            except (Exception, SerializationError) as exc:
                failure = exc
        if failure is not None:  # the check (or the strategy) failed: no retry
            info = ErrorInfo.from_exception(failure)
            inv.record(self.event(EventType.STEP_FAILED, now, error=info, attempt=attempt))
            return Raise(WaitForConditionError(info.message, error_type=info.type), now)
        inv.record(
            self.event(
                EventType.STEP_SUCCEEDED, now, result=data, attempt=attempt, next_delay=seconds
            )
        )
        if seconds is None:
            return Value(state, now)
        return self.resolve(inv, fiber)
