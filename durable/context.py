"""``DurableContext``: what a workflow receives and calls."""

from __future__ import annotations

import functools
import hashlib
import inspect
import random as _random
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from durable.batch import BatchOp, ItemFn
from durable.callback import CreateCallbackOp, WaitForCallbackOp
from durable.child import ChildContextOp
from durable.completion import Branch, Completion
from durable.condition import Strategy, WaitForConditionOp
from durable.errors import WorkflowNotFoundError
from durable.events import SubType
from durable.invoke import InvokeOp
from durable.log import ReplayAwareLogger
from durable.replay import OperationIds
from durable.step import StepOp
from durable.types import Duration, RetryPolicy, StepSemantics, to_seconds
from durable.wait import WaitOp

if TYPE_CHECKING:
    from durable.invocation import Invocation
    from durable.workflow import Workflow

__all__ = ["DurableContext"]

T = TypeVar("T")
ItemT = TypeVar("ItemT")


class DurableContext:
    """The handle a workflow uses for every durable operation.

    Primitives (``step``, ``wait``, ...) return awaitables and must be awaited; ``now``,
    ``random``, ``uuid4``, ``logger``, ``execution_id`` and ``is_replaying`` are plain calls
    and attributes that give the same values on every replay.

    Example::

        @engine.workflow
        async def greet(ctx: DurableContext, name: str) -> str:
            text = await ctx.step(make_greeting, name)
            await ctx.wait(timedelta(hours=1), name="pause")
            return text
    """

    __slots__ = (
        "__weakref__",  # (a weak reference tells whether a context outlived its execution)
        "_counter",
        "_ids",
        "_inv",
        "_logger",
        "_rng",
        "_seed",
        "_time",
        "context_id",
    )

    def __init__(
        self, inv: Invocation, context_id: str | None, *, start_time: float, seed: int
    ) -> None:
        self._inv = inv
        self.context_id = context_id
        """The operation id of this context (``None`` for the workflow itself)."""
        self._counter = 0
        self._ids = OperationIds(context_id)
        self._time = start_time
        self._seed = seed
        self._rng: _random.Random | None = None  # seeding costs microseconds: made on first use
        self._logger: ReplayAwareLogger | None = None

    def _child(self, context_id: str, *, start_time: float) -> DurableContext:
        """A context for a child whose operations are numbered under ``context_id``."""
        return DurableContext(self._inv, context_id, start_time=start_time, seed=self._seed)

    @property
    def execution_id(self) -> str:
        """The id of the execution this workflow runs as."""
        return self._inv.execution_id

    @property
    def is_replaying(self) -> bool:
        """True while the code is re-running a part the history already recorded."""
        record = self._inv.state.ops.get(self._ids(self._counter + 1))
        return record is not None and record.recorded

    @property
    def logger(self) -> ReplayAwareLogger:
        """A structlog logger bound to the execution (and context); silent while replaying."""
        if self._logger is None:
            bound = self._inv.logger.bind(execution_id=self.execution_id)
            if self.context_id is not None:
                bound = bound.bind(context_id=self.context_id)
            self._logger = ReplayAwareLogger(bound, lambda: self.is_replaying)
        return self._logger

    def now(self) -> datetime:
        """The time the workflow reached this point, the same on every replay (UTC).

        It is the timestamp of the last operation outcome this context received (or of
        the execution's start), so two calls with no durable operation between them agree.
        """
        return datetime.fromtimestamp(self._time, tz=UTC)

    @property
    def _random(self) -> _random.Random:
        if self._rng is None:
            key = f"{self._seed}:{self.context_id or ''}".encode()
            seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest())
            self._rng = _random.Random(seed)
        return self._rng

    def random(self) -> float:
        """A float in [0, 1) from a per-execution seed: the same sequence on every replay."""
        return self._random.random()

    def uuid4(self) -> uuid.UUID:
        """A version-4 UUID from the same seeded generator as :meth:`random`."""
        return uuid.UUID(int=self._random.getrandbits(128), version=4)

    @overload
    def step(
        self,
        fn: Callable[..., Coroutine[Any, Any, T]],
        *args: Any,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        semantics: StepSemantics = StepSemantics.AT_LEAST_ONCE_PER_RETRY,
        timeout: Duration | None = None,
    ) -> StepOp[T]: ...

    @overload
    def step(
        self,
        fn: Callable[..., T],
        *args: Any,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        semantics: StepSemantics = StepSemantics.AT_LEAST_ONCE_PER_RETRY,
        timeout: Duration | None = None,
    ) -> StepOp[T]: ...

    def step(
        self,
        fn: Callable[..., Any],
        *args: Any,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        semantics: StepSemantics = StepSemantics.AT_LEAST_ONCE_PER_RETRY,
        timeout: Duration | None = None,
    ) -> StepOp[Any]:
        """Run ``fn(*args)`` once and checkpoint its result; on replay return the record.

        Args:
            fn: a sync function (run in a worker thread) or an async function.
            name: recorded name; defaults to ``fn.__name__`` (none for a lambda).
            retry: the retry policy; ``RetryPolicy.default()`` when ``None``.
            semantics: what a crash mid-attempt means (see :class:`StepSemantics`).
            timeout: bound on one attempt (``StepTimeoutError``, then the policy decides).

        Raises (when awaited):
            StepError: the last attempt failed; carries the original type and message.
        """
        if not callable(fn):
            raise TypeError(f"ctx.step needs a function to run, got {fn!r}")
        if retry is not None:
            _check_retry(retry)
        seconds = None if timeout is None else to_seconds(timeout, what="step timeout")
        return StepOp(self, fn, args, name, retry, semantics, seconds)

    def wait(self, duration: Duration, *, name: str | None = None) -> WaitOp:
        """Suspend the workflow for ``duration`` (a timedelta or seconds > 0), durably.

        Nothing stays in memory while it waits; the engine resumes it when due, also after
        a restart.
        """
        return WaitOp(self, to_seconds(duration, what="wait duration"), name)

    def create_callback(
        self,
        *,
        name: str | None = None,
        timeout: Duration | None = None,
        heartbeat_timeout: Duration | None = None,
    ) -> CreateCallbackOp:
        """Create a callback: hand ``cb.id`` to an outside system, then ``await cb.result()``.

        Args:
            name: recorded name.
            timeout: the callback fails with ``Callback.Timeout`` this long after creation.
            heartbeat_timeout: it fails with ``Callback.Heartbeat`` when no heartbeat (or
                answer) arrives for this long; each heartbeat restarts that clock.

        Example::

            cb = await ctx.create_callback(name="approval", timeout=timedelta(days=7))
            await ctx.step(send_approval_email, cb.id)
            decision = await cb.result()
        """
        return CreateCallbackOp(
            self,
            name=name,
            timeout=_optional_seconds(timeout, "callback timeout"),
            heartbeat_timeout=_optional_seconds(heartbeat_timeout, "callback heartbeat_timeout"),
        )

    def wait_for_callback(
        self,
        submitter: Callable[[str], Any],
        *,
        name: str | None = None,
        timeout: Duration | None = None,
        heartbeat_timeout: Duration | None = None,
        retry: RetryPolicy | None = None,
    ) -> WaitForCallbackOp[Any]:
        """Create a callback, run ``submitter(callback_id)`` as a step, return the answer.

        Recorded as a ``WaitForCallback`` child context holding the callback and the
        submitter's step. A submitter that exhausts ``retry`` fails the context with its
        ``StepError``; the answer's failures raise as in :meth:`Callback.result`.
        """
        if not callable(submitter):
            raise TypeError(f"wait_for_callback needs a submitter function, got {submitter!r}")
        _check_retry(retry)
        return WaitForCallbackOp(
            self,
            submitter,
            name=name,
            timeout=_optional_seconds(timeout, "callback timeout"),
            heartbeat_timeout=_optional_seconds(heartbeat_timeout, "callback heartbeat_timeout"),
            retry=retry,
        )

    def wait_for_condition(
        self,
        check: Callable[[Any], Any],
        *,
        initial_state: Any,
        strategy: Strategy[Any],
        name: str | None = None,
    ) -> WaitForConditionOp[Any]:
        """Poll ``check(state) -> state`` as checkpointed attempts until ``strategy`` stops.

        ``strategy(state, attempt)`` (attempt counts from 1) returns ``None`` to stop (the
        state is the result) or a delay before the next check; see
        :func:`durable.poll_until`. A raising ``check`` raises ``WaitForConditionError``.
        """
        if not callable(check) or not callable(strategy):
            raise TypeError("wait_for_condition needs a check function and a strategy function")
        return WaitForConditionOp(
            self, check, initial_state=initial_state, strategy=strategy, name=name
        )

    def run_in_child_context(
        self, fn: Callable[[DurableContext], Coroutine[Any, Any, T]], *, name: str | None = None
    ) -> ChildContextOp[T]:
        """Run ``async def fn(child_ctx)`` as an isolated child context, checkpointed as one.

        An error escaping it is recorded as ``ContextFailed`` and raised as
        ``ChildContextError`` carrying the original type and message.
        """
        if not callable(fn):
            raise TypeError(f"run_in_child_context needs an async function, got {fn!r}")
        return ChildContextOp(self, fn, name=name)

    def parallel(
        self,
        branches: Sequence[Callable[[DurableContext], Coroutine[Any, Any, Any]] | Branch[Any]],
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
        completion: Completion | None = None,
    ) -> BatchOp:
        """Run ``async def branch(ctx)`` callables (or ``Branch(fn, name=...)``) concurrently.

        Each branch is a child context. Returns a :class:`~durable.BatchResult` in branch
        order; branch failures never raise by themselves (``throw_if_error()`` does).
        ``completion`` defaults to :meth:`Completion.all_successful`.

        Raises (at once, before anything is recorded):
            TypeError: a branch is not an async callable.
            ValueError: ``max_concurrency < 1`` or a completion that cannot be met.
        """
        wrapped = [b if isinstance(b, Branch) else Branch(b) for b in branches]
        return BatchOp(
            self,
            [b.fn for b in wrapped],
            [b.name for b in wrapped],
            name=name,
            sub_type=SubType.PARALLEL.value,
            item_sub_type=SubType.PARALLEL_BRANCH.value,
            max_concurrency=max_concurrency,
            completion=completion if completion is not None else Completion.all_successful(),
        )

    def map(
        self,
        items: Iterable[ItemT],
        fn: Callable[[DurableContext, ItemT, int], Coroutine[Any, Any, Any]],
        *,
        name: str | None = None,
        max_concurrency: int | None = None,
        completion: Completion | None = None,
        item_name: Callable[[ItemT, int], str] | None = None,
    ) -> BatchOp:
        """Run ``async def fn(ctx, item, index)`` for every item, each in a child context.

        Items start in index order up to ``max_concurrency``; results come back in index
        order. ``completion`` defaults to fail-fast (stop after the first failure).
        ``item_name(item, index)`` names each iteration in the history.

        Raises (at once, before anything is recorded):
            TypeError: ``fn`` is not an async function.
            ValueError: ``max_concurrency < 1`` or a completion that cannot be met.
        """
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"ctx.map needs an 'async def fn(ctx, item, index)', got {fn!r}")
        values = list(items)
        makers: list[ItemFn] = [
            functools.partial(_call_item, fn, v, i) for i, v in enumerate(values)
        ]
        names = [item_name(v, i) if item_name else None for i, v in enumerate(values)]
        return BatchOp(
            self,
            makers,
            names,
            name=name,
            sub_type=SubType.MAP.value,
            item_sub_type=SubType.MAP_ITERATION.value,
            max_concurrency=max_concurrency,
            completion=completion if completion is not None else Completion(),
        )

    def invoke(
        self,
        workflow: Workflow[T] | str,
        payload: Any = None,
        *,
        name: str | None = None,
        timeout: Duration | None = None,
    ) -> InvokeOp[T]:
        """Start a registered workflow as a child execution and await its result.

        The child has its own id (``<this execution id>:<operation id>``), shows in
        ``engine.list()`` with ``parent_id`` set, and may run on any worker. Stopping this
        execution stops it too; a ``timeout`` stops it and fails the invoke.

        Raises (at once, before anything is recorded):
            WorkflowNotFoundError: the workflow is not registered on this engine.
            SerializationError, PayloadTooLargeError: the payload cannot be stored.

        Raises (when awaited):
            InvokeError: the child failed, stopped or timed out (its type and message).
        """
        wf_name = workflow if isinstance(workflow, str) else workflow.name
        registered = self._inv.rt.workflows.get(wf_name)
        if registered is None:
            known = ", ".join(sorted(self._inv.rt.workflows)) or "none"
            raise WorkflowNotFoundError(
                f"ctx.invoke: no workflow named {wf_name!r} is registered (registered: {known})"
            )
        data = self._inv.serde.encode(payload, what=f"input of invoked workflow {wf_name!r}")
        return InvokeOp(
            self,
            registered,
            data,
            name=name,
            timeout=_optional_seconds(timeout, "invoke timeout"),
        )


def _call_item(
    fn: Callable[[DurableContext, Any, int], Coroutine[Any, Any, Any]],
    item: Any,
    index: int,
    ctx: DurableContext,
) -> Coroutine[Any, Any, Any]:
    return fn(ctx, item, index)


def _check_retry(retry: object) -> None:
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy, got {retry!r}")


def _optional_seconds(value: Duration | None, what: str) -> float | None:
    return None if value is None else to_seconds(value, what=what)
