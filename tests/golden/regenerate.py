"""Regenerate the golden histories in ``tests/golden/histories/``.

Each one is a real run of one of the project's workflows under the testing kit's runner
(virtual clock, in-memory store), exported as ``durable history ID --json`` prints it.
``test_golden.py`` replays them against the current code: a change that breaks replay of
executions recorded by an earlier version fails there. Regenerate them only for a change
that is *meant* to be incompatible (and then version the workflow in real life)::

    python tests/golden/regenerate.py
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from durable import Engine  # noqa: E402
from durable.demo import build_engine as demo_engine  # noqa: E402
from durable.testing import DurableTestRunner, TestResult  # noqa: E402
from examples.approval import build_engine as approval_engine  # noqa: E402
from tests.golden.workflows import build_engine as golden_engine  # noqa: E402

HISTORIES = HERE / "histories"

Scenario = Callable[[DurableTestRunner], Awaitable[TestResult[Any]]]


async def order(runner: DurableTestRunner) -> TestResult[Any]:
    """durable/demo.py: the order workflow (a failed, retried payment; a cool-off timer)."""
    items = {"id": "order-1", "items": ["book", "lamp"], "amount": 42.5}
    return await runner.run("place_order", items, execution_id="order-1")


def expense(timeout: float) -> dict[str, Any]:
    return {"id": "expense-1", "amount": 120.0, "timeout": timeout}


async def approval_approved(runner: DurableTestRunner) -> TestResult[Any]:
    """examples/approval.py: the manager approves."""
    handle = await runner.start("expense_approval", expense(3600), execution_id="expense-1")
    callback_id = await runner.wait_for_callback(handle, "manager-approval")
    await runner.send_callback_success(callback_id, {"approved": True, "by": "ana"})
    return await runner.result(handle)


async def approval_escalated(runner: DurableTestRunner) -> TestResult[Any]:
    """examples/approval.py: nobody answers; the callback times out and it escalates."""
    return await runner.run("expense_approval", expense(3600), execution_id="expense-2")


async def fulfilment(runner: DurableTestRunner) -> TestResult[Any]:
    """tests/golden/workflows.py: map over the items, then two parallel branches."""
    order = {
        "id": "order-2",
        "email": "ana@example.com",
        "amount": 99.0,
        "items": [{"sku": "book", "qty": 1}, {"sku": "lamp", "qty": 2}, {"sku": "pen", "qty": 5}],
    }
    return await runner.run("fulfil_order", order, execution_id="order-2")


async def export(runner: DurableTestRunner) -> TestResult[Any]:
    """tests/golden/workflows.py: poll an export with wait_for_condition."""
    return await runner.run("export_report", {"report": "q3"}, execution_id="export-1")


GOLDEN: dict[str, tuple[Callable[[str], Engine], Scenario]] = {
    "order": (demo_engine, order),
    "approval-approved": (approval_engine, approval_approved),
    "approval-escalated": (approval_engine, approval_escalated),
    "fulfilment": (golden_engine, fulfilment),
    "export": (golden_engine, export),
}
"""File name -> (the app's engine builder, the scenario that records the history)."""


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    for name, (build, scenario) in GOLDEN.items():
        async with DurableTestRunner(build(":memory:")) as runner:
            result = await scenario(runner)
        if result.status != "SUCCEEDED":
            raise SystemExit(f"{name}: the run ended {result.status}: {result.error}")
        path = HISTORIES / f"{name}.json"
        path.write_text(json.dumps(result.history_json(), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)} ({len(result.history)} events)")


if __name__ == "__main__":
    anyio.run(main)
