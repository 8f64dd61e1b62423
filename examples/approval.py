"""Human-in-the-loop: an expense waits for a manager's decision, or escalates on timeout.

Terminal 1 (the worker; it prints the callback id and waits, holding nothing while it does)::

    python examples/approval.py --amount 120 --timeout 300

Terminal 2 (the manager), any of::

    durable callback succeed CALLBACK_ID '{"approved": true, "by": "ana"}' --db approval.db
    durable callback fail CALLBACK_ID --error-type Rejected --message "over budget" --db approval.db
    # ...or nothing: after --timeout seconds the request is escalated

Kill terminal 1 at any point (Ctrl-C, or ``kill -9``) and run ``python examples/approval.py
--resume EXPENSE_ID``: the execution carries on where its log says, and an answer sent while
no worker was running is delivered when one starts.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

import anyio

from durable import (
    CallbackFailedError,
    CallbackTimeoutError,
    Clock,
    DurableContext,
    Engine,
)


def build_engine(db: str = "approval.db", *, clock: Clock | None = None) -> Engine:
    """The approval app: an engine with the ``expense_approval`` workflow."""
    engine = Engine(db, clock=clock)

    def notify_approver(callback_id: str) -> None:
        # A real app would send an email or a chat message with approve/reject links.
        print(
            f"\nApproval needed. From another terminal run:\n"
            f"  durable callback succeed {callback_id} '{{\"approved\": true}}' --db {db}\n"
            f"  durable callback fail {callback_id} --error-type Rejected --message 'why'"
            f" --db {db}\n",
            flush=True,
        )

    def pay(expense: dict[str, Any]) -> str:
        return f"payment-{expense['id']}"

    def escalate(expense: dict[str, Any]) -> str:
        return f"escalated {expense['id']} to the finance team"

    @engine.workflow
    async def expense_approval(ctx: DurableContext, expense: dict[str, Any]) -> dict[str, Any]:
        try:
            decision = await ctx.wait_for_callback(
                notify_approver, name="manager-approval", timeout=expense["timeout"]
            )
        except CallbackTimeoutError:
            note = await ctx.step(escalate, expense)
            return {"status": "escalated", "note": note}
        except CallbackFailedError as exc:
            return {"status": "rejected", "reason": exc.message, "type": exc.error_type}
        if not decision.get("approved"):
            return {"status": "rejected", "reason": "not approved"}
        payment = await ctx.step(pay, expense)
        return {"status": "paid", "payment": payment, "approved_by": decision.get("by")}

    return engine


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="approval.db")
    parser.add_argument("--amount", type=float, default=120.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds before escalating")
    parser.add_argument("--resume", metavar="EXPENSE_ID", help="wait for an existing expense")
    args = parser.parse_args()
    engine = build_engine(args.db)
    async with engine:
        if args.resume:
            handle = engine.handle(args.resume)
        else:
            expense_id = f"expense-{uuid.uuid4().hex[:8]}"
            expense = {"id": expense_id, "amount": args.amount, "timeout": args.timeout}
            handle = await engine.start("expense_approval", expense, execution_id=expense_id)
            print(f"started {expense_id} (resume with --resume {expense_id})", flush=True)
        print(await handle.result(), flush=True)


if __name__ == "__main__":
    anyio.run(main)
