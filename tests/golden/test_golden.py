"""Committed histories of real runs must keep replaying against the current code.

``regenerate.py`` recorded them; a change to a workflow (or to the engine's replay) that
would break executions recorded before it fails here, naming the operation.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from durable import DurableContext, ExecutionStatus, NonDeterministicError, RetryPolicy
from durable.testing import DurableTestRunner, check_replay
from tests.golden.regenerate import GOLDEN, HISTORIES

WORKFLOW_OF = {
    "order": "place_order",
    "approval-approved": "expense_approval",
    "approval-escalated": "expense_approval",
    "fulfilment": "fulfil_order",
    "export": "export_report",
}


def test_every_golden_history_is_committed() -> None:
    assert sorted(p.stem for p in HISTORIES.glob("*.json")) == sorted(GOLDEN)
    assert sorted(WORKFLOW_OF) == sorted(GOLDEN)


@pytest.mark.parametrize("name", sorted(GOLDEN))
async def test_golden_history_replays_against_the_current_code(name: str) -> None:
    build, _ = GOLDEN[name]
    workflow = build(":memory:").workflows[WORKFLOW_OF[name]]
    path = HISTORIES / f"{name}.json"
    result = await check_replay(workflow, path)
    assert result.status == ExecutionStatus.SUCCEEDED
    assert result.events == len(json.loads(path.read_text())["Events"])
    assert result.operations > 0
    assert result.new_operations == ()


async def test_golden_histories_replay_through_a_runner_on_the_apps_engine() -> None:
    build, _ = GOLDEN["approval-approved"]
    async with DurableTestRunner(build(":memory:")) as runner:
        for name in ("approval-approved", "approval-escalated"):
            result = await runner.replay_check("expense_approval", HISTORIES / f"{name}.json")
            assert result.workflow == "expense_approval"


# The order workflow of durable/demo.py as someone might "improve" it: payment before the
# reservation. Replay never runs steps, so stand-ins with the same names will do.
def reserve_inventory(items: list[str]) -> dict[str, Any]:
    raise AssertionError("never runs on replay")


def charge(amount: float) -> dict[str, Any]:
    raise AssertionError("never runs on replay")


async def reordered_place_order(ctx: DurableContext, order: dict[str, Any]) -> dict[str, Any]:
    payment = await ctx.step(
        charge, order["amount"], name="process-payment", retry=RetryPolicy(max_attempts=5)
    )
    inventory = await ctx.step(reserve_inventory, order["items"])
    return {"payment": payment, "inventory": inventory}


async def test_the_checker_catches_a_change_to_a_golden_workflow() -> None:
    history = json.loads((HISTORIES / "order.json").read_text())
    first_step = next(e for e in history["Events"] if e["EventType"] == "StepStarted")
    with pytest.raises(NonDeterministicError) as caught:
        await check_replay(reordered_place_order, history)
    message = str(caught.value)
    assert f"operation 1 of the workflow (id {first_step['Id']})" in message
    assert "recorded as Step named 'reserve_inventory'" in message
    assert "now calls Step named 'process-payment'" in message
    assert "[recorded at history event 2: StepStarted]" in message
