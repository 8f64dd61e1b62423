"""``ctx.step``: run a function once, checkpoint its result, retry it by policy."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgspec

from durable.errors import (
    PayloadTooLargeError,
    SerializationError,
    StepError,
    StepInterruptedError,
    StepTimeoutError,
)
from durable.events import EventType, SubType
from durable.operation import Operation, Outcome, Raise, Value
from durable.replay import OpRecord, OpStatus
from durable.retry import retry_delay
from durable.types import ErrorInfo, RetryPolicy, StepSemantics

if TYPE_CHECKING:
    from durable.clock import Clock
    from durable.context import DurableContext
    from durable.invocation import Fiber, Invocation

__all__ = [
    "Done",
    "Interrupted",
    "Run",
    "Sleep",
    "StepOp",
    "call_user_fn",
    "cancelled_by_us",
    "decide",
    "error_from_info",
]

T = TypeVar("T")

DEFAULT_RETRY = RetryPolicy.default()
_SUCCEEDED = OpStatus.SUCCEEDED

_STEP_ERRORS: dict[str, type[StepError]] = {
    cls.__name__: cls
    for cls in (StepTimeoutError, StepInterruptedError, SerializationError, PayloadTooLargeError)
}


def error_from_info(info: ErrorInfo, default: type[StepError] = StepError) -> StepError:
    """The exception a recorded step failure raises, the same live and on every replay."""
    cls = _STEP_ERRORS.get(info.type, default)
    return cls(info.message, error_type=info.type)


@dataclass(frozen=True, slots=True)
class Done:
    """The step has its final outcome in the record."""


@dataclass(frozen=True, slots=True)
class Run:
    """Run attempt ``attempt``; record ``StepStarted`` first when ``record_start``."""

    attempt: int
    record_start: bool


@dataclass(frozen=True, slots=True)
class Interrupted:
    """An AT_MOST_ONCE attempt was started by an earlier invocation that died."""

    attempt: int


@dataclass(frozen=True, slots=True)
class Sleep:
    """The next attempt is due at ``until``."""

    until: float


Decision = Done | Run | Interrupted | Sleep


def decide(record: OpRecord | None, semantics: StepSemantics, now: float) -> Decision:
    """What a step must do given its record: pure, for replay and for tests."""
    if record is None:
        return Run(1, record_start=True)
    if record.done:
        return Done()
    if record.status is OpStatus.RETRY_PENDING:
        assert record.next_attempt_at is not None
        if now >= record.next_attempt_at:
            return Run(record.attempt + 1, record_start=True)
        return Sleep(record.next_attempt_at)
    if record.recorded and record.attempt_open:
        if semantics is StepSemantics.AT_MOST_ONCE_PER_RETRY:
            return Interrupted(record.attempt)
        return Run(record.attempt, record_start=False)
    raise AssertionError(f"step {record.id} decided while its attempt is running")


def cancelled_by_us() -> bool:
    """Whether the running task was asked to cancel (by anyio), not just handed an error."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


def _is_async(fn: Callable[..., Any]) -> bool:
    code = getattr(fn, "__code__", None)  # plain functions and methods: a flag test first
    if code is not None and code.co_flags & inspect.CO_COROUTINE:
        return True
    # partials, and wrappers marked with inspect.markcoroutinefunction (Python 3.12+)
    return inspect.iscoroutinefunction(fn)


async def call_user_fn(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Call user code: async functions on the loop, sync ones in a worker thread."""
    if _is_async(fn):
        return await fn(*args)
    # Sync bodies run in a worker thread so they never block the event loop.
    result = await anyio.to_thread.run_sync(lambda: fn(*args), abandon_on_cancel=True)
    if inspect.isawaitable(result):
        result = await result
    return result


async def _call_with_timeout(
    fn: Callable[..., Any], args: tuple[Any, ...], clock: Clock, seconds: float
) -> Any:
    outcome: list[Any] = []
    failure: list[BaseException] = []
    async with anyio.create_task_group() as tg:

        async def body() -> None:
            try:
                outcome.append(await call_user_fn(fn, args))
            except Exception as exc:
                failure.append(exc)
            tg.cancel_scope.cancel()

        async def timer() -> None:
            await clock.wait(anyio.Event(), clock.now() + seconds)
            tg.cancel_scope.cancel()

        tg.start_soon(body)
        tg.start_soon(timer)
    if failure:
        raise failure[0]
    if not outcome:
        raise StepTimeoutError(f"step attempt timed out after {seconds:g} s")
    return outcome[0]


class StepOp(Operation[T]):
    """The awaitable ``ctx.step`` returns."""

    kind = "Step"
    default_sub_type = SubType.STEP.value
    __slots__ = ("args", "fn", "retry", "semantics", "timeout")

    def __init__(
        self,
        ctx: DurableContext,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        name: str | None,
        retry: RetryPolicy | None,
        semantics: StepSemantics,
        timeout: float | None,
    ) -> None:
        # Operation.__init__ spelled out: a replayed step costs a few microseconds in all,
        # and the extra call and its keyword handling were a tenth of that.
        if name is None:
            name = getattr(fn, "__name__", None)
            if name == "<lambda>":
                name = None
        elif not isinstance(name, str):
            raise TypeError(f"an operation name must be a string, got {name!r}")
        self.ctx = ctx
        self.name = name
        self.sub_type = self.default_sub_type
        counter = ctx._counter = ctx._counter + 1
        self.counter = counter
        id_state = ctx._ids.prefix.copy()  # ctx._ids(counter), inlined
        id_state.update(b"%d" % counter)
        self.op_id = id_state.hexdigest()
        self.fn = fn
        self.args = args
        self.retry = retry if retry is not None else DEFAULT_RETRY
        self.semantics = semantics if type(semantics) is StepSemantics else StepSemantics(semantics)
        self.timeout = timeout

    @property
    def label(self) -> str:
        """How errors name this step."""
        return f"step {self.name!r}" if self.name else f"step {self.op_id}"

    def _result_label(self) -> str:
        return f"result of {self.label}"

    def __await__(self) -> Generator[Operation[T], Any, T]:
        # Replay fast path: a recorded success of this very step (checked as determinism
        # would) is decoded and returned right here, without a round trip through the driver.
        ctx = self.ctx
        inv = ctx._inv
        if inv.current_ctx is ctx:
            record = inv.state.ops.get(self.op_id)
            if (
                record is not None
                and record.status is _SUCCEEDED
                and record.kind == "Step"
                and record.name == self.name
                and record.sub_type == self.sub_type
                and record.parent == ctx.context_id
            ):
                try:
                    value: T = inv.serde.result_decoder(self.fn).decode(record.result)  # type: ignore[arg-type]
                except msgspec.ValidationError:
                    pass  # the driver's path raises the error the workflow sees
                else:
                    ctx._time = record.ended_ts
                    return value
        result: T = yield self
        return result

    def resolve(self, inv: Invocation, fiber: Fiber) -> Outcome | None:
        """Replay the record, or start/schedule the next attempt."""
        record = self.record_for(inv)
        while True:
            decision = decide(record, self.semantics, inv.now())
            if isinstance(decision, Done):
                assert record is not None
                if record.status is OpStatus.SUCCEEDED:
                    assert record.result is not None
                    try:
                        value = inv.serde.result_decoder(self.fn).decode(record.result)
                    except msgspec.ValidationError as exc:
                        raise SerializationError(
                            f"result of {self.label} does not match its annotation: {exc}"
                        ) from None
                    return Value(value, record.ended_ts)
                assert record.error is not None
                return Raise(error_from_info(record.error), record.ended_ts)
            if isinstance(decision, Sleep):
                inv.block(fiber, self, decision.until)
                return None
            if isinstance(decision, Interrupted):
                error = StepInterruptedError(
                    f"{self.label} attempt {decision.attempt} was interrupted: its process "
                    "stopped before it finished (AT_MOST_ONCE_PER_RETRY does not re-run it)"
                )
                record = self._record_failure(inv, decision.attempt, error)
                continue
            if not inv.accepting_work:
                inv.park(fiber, self)
                return None
            if decision.record_start:
                record = inv.record(
                    self.event(EventType.STEP_STARTED, inv.now(), attempt=decision.attempt)
                )
            inv.start_task(
                fiber,
                self,
                self._attempt(inv.clock, decision.attempt),
                durable_first=self.semantics is StepSemantics.AT_MOST_ONCE_PER_RETRY,
            )
            return None

    async def _attempt(self, clock: Clock, attempt: int) -> tuple[int, bool, Any]:
        try:
            if self.timeout is None:
                value = await call_user_fn(self.fn, self.args)
            else:
                value = await _call_with_timeout(self.fn, self.args, clock, self.timeout)
        except StepTimeoutError as exc:
            return attempt, False, StepTimeoutError(f"{self.label} attempt {attempt}: {exc}")
        except Exception as exc:
            return attempt, False, exc
        except anyio.get_cancelled_exc_class() as exc:
            if cancelled_by_us():
                raise
            # the body raised CancelledError on its own (some clients do): a plain failure
            return attempt, False, exc
        return attempt, True, value

    def on_arrival(self, inv: Invocation, fiber: Fiber, payload: Any) -> Outcome | None:
        """An attempt finished: checkpoint its result or its failure."""
        attempt, ok, value = payload
        if ok:
            try:
                data, decoded = inv.serde.roundtrip_result(value, self.fn, self._result_label)
            except SerializationError as exc:
                value = exc
            else:
                now = inv.now()
                inv.record(self.event(EventType.STEP_SUCCEEDED, now, result=data, attempt=attempt))
                return Value(decoded, now)
        try:
            self._record_failure(inv, attempt, value)
        finally:
            # Recorded (or its retry predicate failed): its traceback is needed no more. Its
            # frames hold this error one way or another (anyio's future for a sync body, the
            # timeout's list, the driver's frames, which Python 3.12 keeps as a finished
            # frame's caller), and the step: a cycle only the garbage collector would free.
            value.__traceback__ = None
        return self.resolve(inv, fiber)

    def _record_failure(self, inv: Invocation, attempt: int, error: BaseException) -> OpRecord:
        delay = retry_delay(self.retry, attempt, error, inv.rng)
        record = inv.record(
            self.event(
                EventType.STEP_FAILED,
                inv.now(),
                error=ErrorInfo.from_exception(error),
                attempt=attempt,
                next_delay=delay,
            )
        )
        assert record is not None
        return record
