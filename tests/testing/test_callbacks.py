"""Callbacks under the runner: waiting for one by name, answering it, bad answers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from durable import (
    CallbackAlreadyCompletedError,
    CallbackFailedError,
    CallbackNotFoundError,
    DurableContext,
    ExecutionStatus,
)
from durable.testing import DurableTestRunner


def notify(callback_id: str) -> None:
    """Tells nobody."""


async def test_wait_for_callback_skips_time_until_the_callback_exists() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def later(ctx: DurableContext) -> Any:
            await ctx.wait(timedelta(days=2))
            return await ctx.wait_for_callback(notify, name="sign-off", timeout=timedelta(days=1))

        start = runner.clock.now()
        handle = await runner.start(later)
        callback_id = await runner.wait_for_callback(handle, "sign-off")
        assert runner.clock.now() == start + 2 * 86_400  # no further than needed
        await runner.send_callback_success(callback_id, "signed")
        assert await handle.result() == "signed"


async def test_a_failure_answer_raises_in_the_workflow_with_its_words() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def approval(ctx: DurableContext) -> str:
            try:
                await ctx.wait_for_callback(notify, name="manager")
            except CallbackFailedError as exc:
                return f"{exc.error_type}: {exc.message}"
            return "approved"

        handle = await runner.start(approval)
        callback_id = await runner.wait_for_callback(handle, "manager")
        await runner.send_callback_failure(callback_id, error_type="Rejected", message="no budget")
        result = await runner.result(handle)
    assert result.result == "Rejected: no budget"
    assert result.get_callback("manager").error is not None


async def test_heartbeats_keep_a_callback_alive() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def job(ctx: DurableContext) -> Any:
            cb = await ctx.create_callback(name="worker", heartbeat_timeout=timedelta(minutes=5))
            return await cb.result()

        handle = await runner.start(job)
        callback_id = await runner.wait_for_callback(handle, "worker")
        for _ in range(3):
            await runner.advance(timedelta(minutes=4))
            await runner.send_callback_heartbeat(callback_id)
        assert (await runner.inspect(handle)).status == ExecutionStatus.RUNNING
        await runner.send_callback_success(callback_id, 42)
        assert await handle.result() == 42


async def test_callbacks_of_the_same_name_are_answered_one_after_the_other() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def until_yes(ctx: DurableContext) -> int:
            rounds = 0
            while True:
                rounds += 1
                cb = await ctx.create_callback(name="ask")
                if await cb.result() == "yes":
                    return rounds

        handle = await runner.start(until_yes)
        first = await runner.wait_for_callback(handle, "ask")
        await runner.send_callback_success(first, "no")
        second = await runner.wait_for_callback(handle, "ask")
        assert second != first
        await runner.send_callback_success(second, "yes")
        assert await handle.result() == 2


async def test_completing_a_callback_that_does_not_exist_yet_is_a_clear_error() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def slow(ctx: DurableContext) -> Any:
            await ctx.wait(timedelta(hours=1))
            return await ctx.wait_for_callback(notify, name="approval")

        handle = await runner.start(slow)
        with pytest.raises(CallbackNotFoundError, match="exists in this run \\(yet\\)") as caught:
            await runner.send_callback_success("0" * 48, True)
        assert "Callbacks created so far: none" in str(caught.value)
        assert "runner.wait_for_callback(handle, name)" in str(caught.value)
        await runner.wait_for_callback(handle, "approval")
        with pytest.raises(CallbackNotFoundError, match="is a callback's name; pass its id"):
            await runner.send_callback_failure("approval", error_type="X", message="y")
        with pytest.raises(CallbackNotFoundError, match=r"'approval' = [0-9a-f]{48} \(PENDING\)"):
            await runner.send_callback_heartbeat("f" * 48)


async def test_answering_twice_is_refused() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def once(ctx: DurableContext) -> Any:
            return await ctx.wait_for_callback(notify, name="once")

        handle = await runner.start(once)
        callback_id = await runner.wait_for_callback(handle, "once")
        await runner.send_callback_success(callback_id, 1)
        with pytest.raises(CallbackAlreadyCompletedError):
            await runner.send_callback_success(callback_id, 2)
        assert await handle.result() == 1


async def test_wait_for_callback_when_the_execution_ends_without_it() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def no_callback(ctx: DurableContext) -> None:
            await ctx.wait(10)

        handle = await runner.start(no_callback)
        with pytest.raises(RuntimeError, match="ended \\(SUCCEEDED\\) without a pending callback"):
            await runner.wait_for_callback(handle, "approval")


async def test_wait_for_callback_when_the_execution_waits_for_another_one() -> None:
    async with DurableTestRunner() as runner:

        @runner.workflow
        async def other(ctx: DurableContext) -> Any:
            return await ctx.wait_for_callback(notify, name="finance")

        handle = await runner.start(other)
        with pytest.raises(RuntimeError, match="cannot create callback 'legal'") as caught:
            await runner.wait_for_callback(handle, "legal")
    assert "its callbacks: 'finance' (PENDING)" in str(caught.value)
