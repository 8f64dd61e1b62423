"""Testing workflows: a runner that skips time, crash injection, fakes and replay checks.

``DurableTestRunner`` runs workflows on an in-memory store and a virtual clock that jumps to
the next timer whenever nothing else can run, so a workflow that waits a week finishes in
milliseconds. ``check_replay`` replays recorded histories (``durable history ID --json``)
against the current code and reports non-determinism. The pytest plugin
(``durable.testing.pytest_plugin``, registered as an entry point) provides the
``durable_runner`` and ``virtual_clock`` fixtures. See ``docs/testing.md``.

Example::

    from durable.testing import DurableTestRunner

    async def test_reminder_waits_a_week() -> None:
        async with DurableTestRunner() as runner:

            @runner.workflow
            async def reminder(ctx: DurableContext, user: str) -> str:
                await ctx.wait(timedelta(days=7), name="week")
                return await ctx.step(send_reminder, user)

            result = await runner.run(reminder, "ana")
            assert result.status == "SUCCEEDED"
            assert result.get_wait("week").done
"""

from durable.testing._crash import CrashPoint, CrashRule
from durable.testing._history import HistorySource
from durable.testing._replayer import ReplayResult, check_replay
from durable.testing._result import (
    CallbackInfo,
    ContextInfo,
    InvokeInfo,
    OperationInfo,
    OperationStatus,
    StepAttempt,
    StepInfo,
    TestResult,
    WaitInfo,
)
from durable.testing._runner import DurableTestRunner, TestHandle

__all__ = [
    "CallbackInfo",
    "ContextInfo",
    "CrashPoint",
    "CrashRule",
    "DurableTestRunner",
    "HistorySource",
    "InvokeInfo",
    "OperationInfo",
    "OperationStatus",
    "ReplayResult",
    "StepAttempt",
    "StepInfo",
    "TestHandle",
    "TestResult",
    "WaitInfo",
    "check_replay",
]
