"""The pytest plugin's fixtures, as a user gets them (no import needed)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from durable import DurableContext, Engine, VirtualClock
from durable.testing import DurableTestRunner

app = Engine(":memory:")


@app.workflow
async def greeting(ctx: DurableContext, name: str) -> str:
    await ctx.wait(timedelta(days=1))
    return f"hello {name}"


async def test_the_runner_fixture_runs_on_the_clock_fixture(
    durable_runner: DurableTestRunner, virtual_clock: VirtualClock
) -> None:
    assert durable_runner.clock is virtual_clock

    @durable_runner.workflow
    async def week(ctx: DurableContext) -> str:
        await ctx.wait(timedelta(days=7))
        return "done"

    start = virtual_clock.now()
    result = await durable_runner.run(week)
    assert result.result == "done"
    assert virtual_clock.now() - start == 7 * 86_400


async def test_each_test_gets_a_fresh_runner(durable_runner: DurableTestRunner) -> None:
    assert durable_runner.engine.workflows == {}
    assert await durable_runner.engine.list() == []


class TestWithTheAppEngine:
    @pytest.fixture
    def durable_engine(self) -> Engine:
        return app

    async def test_the_runner_runs_the_apps_workflows(
        self, durable_runner: DurableTestRunner
    ) -> None:
        assert durable_runner.engine.workflows["greeting"] is greeting
        assert (await durable_runner.run(greeting, "ana")).result == "hello ana"


def test_the_plugin_is_registered_as_an_entry_point(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.has_plugin("durable")
