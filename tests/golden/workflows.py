"""Workflows whose golden histories are kept besides the demo's and the examples' ones:
a ``map`` + ``parallel`` fulfilment and a ``wait_for_condition`` export."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from durable import Branch, DurableContext, Engine, poll_until


def pack_item(item: dict[str, Any]) -> dict[str, Any]:
    return {"sku": item["sku"], "box": f"box-{item['sku']}-{item['qty']}"}


def send_email(address: str) -> str:
    return f"sent to {address}"


def book_revenue(amount: float) -> str:
    return f"booked {amount:.2f}"


def start_export(report: str) -> str:
    return f"job-{report}"


def check_export(state: dict[str, Any]) -> dict[str, Any]:
    checks = state["checks"] + 1
    return {**state, "checks": checks, "status": "done" if checks >= 3 else "running"}


def fetch_link(job: str) -> str:
    return f"https://reports.example.com/{job}.csv"


def build_engine(db: str = ":memory:") -> Engine:
    """An engine with the ``fulfil_order`` and ``export_report`` workflows."""
    engine = Engine(db)

    async def pack(ctx: DurableContext, item: dict[str, Any], index: int) -> Any:
        return await ctx.step(pack_item, item, name="pack")

    @engine.workflow
    async def fulfil_order(ctx: DurableContext, order: dict[str, Any]) -> dict[str, Any]:
        boxes = await ctx.map(
            order["items"],
            pack,
            name="pack-items",
            max_concurrency=2,
            item_name=lambda item, index: f"item-{item['sku']}",
        )
        boxes.throw_if_error()

        async def notify(branch: DurableContext) -> str:
            return await branch.step(send_email, order["email"], name="email")

        async def ledger(branch: DurableContext) -> str:
            await branch.wait(timedelta(minutes=5), name="settle")
            return await branch.step(book_revenue, order["amount"], name="book")

        after = await ctx.parallel(
            [Branch(notify, name="notify"), Branch(ledger, name="ledger")], name="after-packing"
        )
        notified, booked = after.get_results()
        return {"boxes": boxes.get_results(), "notified": notified, "booked": booked}

    @engine.workflow
    async def export_report(ctx: DurableContext, request: dict[str, Any]) -> dict[str, Any]:
        job = await ctx.step(start_export, request["report"], name="start-export")
        ready = await ctx.wait_for_condition(
            check_export,
            initial_state={"job": job, "status": "queued", "checks": 0},
            strategy=poll_until(
                lambda state: state["status"] == "done",
                delay=timedelta(seconds=30),
                backoff_rate=2,
                max_delay=timedelta(minutes=5),
                max_attempts=10,
            ),
            name="export-ready",
        )
        url = await ctx.step(fetch_link, ready["job"], name="fetch-link")
        return {"url": url, "checks": ready["checks"]}

    return engine
