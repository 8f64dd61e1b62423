"""Fake child workflows for ctx.invoke."""

from __future__ import annotations

from typing import Any

import pytest

from durable import DurableContext, Engine, InvokeError
from durable.testing import DurableTestRunner


def build_app() -> tuple[Engine, Any]:
    app = Engine(":memory:")

    @app.workflow
    async def ship(ctx: DurableContext, order: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("the real shipping workflow must not run in this test")

    @app.workflow
    async def checkout(ctx: DurableContext, order: dict[str, Any]) -> Any:
        try:
            return await ctx.invoke(ship, order, name="ship")
        except InvokeError as exc:
            return {"failed": exc.error_type, "why": exc.message}

    return app, checkout


async def test_a_constant_fake_replaces_the_real_child_workflow() -> None:
    app, checkout = build_app()
    real_ship = app.workflows["ship"]
    async with DurableTestRunner(app) as runner:
        fake = runner.register_fake("ship", {"tracking": "1Z-9"})
        result = await runner.run(checkout, {"id": 7})
    assert fake.name == "ship"
    assert app.workflows["ship"] is real_ship  # the app keeps its workflow
    assert result.result == {"tracking": "1Z-9"}
    invoke = result.get_invoke("ship")
    assert invoke.input == {"id": 7}
    assert invoke.function_name == "ship"


async def test_an_async_fake_gets_the_input_and_can_use_the_context() -> None:
    app, checkout = build_app()
    seen: list[Any] = []

    async def ship(ctx: DurableContext, order: dict[str, Any]) -> dict[str, Any]:
        seen.append(order)
        await ctx.wait(3600)
        return {"tracking": f"1Z-{order['id']}"}

    async with DurableTestRunner(app) as runner:
        runner.register_fake("ship", ship)
        result = await runner.run(checkout, {"id": 8})
        child = await runner.inspect(result.get_invoke("ship").child_execution_id or "")
    assert result.result == {"tracking": "1Z-8"}
    assert seen[0] == {"id": 8}
    assert child.status == "SUCCEEDED"


async def test_an_exception_fake_fails_the_invoke_with_its_words() -> None:
    app, checkout = build_app()
    async with DurableTestRunner(app) as runner:
        runner.register_fake("ship", LookupError("no such address"))
        result = await runner.run(checkout, {"id": 9})
    assert result.result == {"failed": "LookupError", "why": "no such address"}
    assert result.get_invoke("ship").status == "FAILED"


async def test_a_fake_can_stand_in_for_a_workflow_that_is_not_registered() -> None:
    async with DurableTestRunner() as runner:
        runner.register_fake("billing", None)

        @runner.workflow
        async def parent(ctx: DurableContext) -> Any:
            return await ctx.invoke("billing", {"amount": 3})

        result = await runner.run(parent)
    assert result.status == "SUCCEEDED"
    assert result.result is None


def test_a_plain_function_is_refused_as_a_fake() -> None:
    runner = DurableTestRunner()
    with pytest.raises(TypeError, match="async def"):
        runner.register_fake("ship", lambda ctx, order: {"tracking": "x"})
    with pytest.raises(TypeError, match="needs a name"):
        runner.register_fake("", 1)
