"""``durable demo``: the order workflow, interrupted for real and resumed.

The demo starts a worker *process*, lets it run the order workflow until it is suspended on
its cool-off timer, kills it with SIGKILL, starts a second worker, and shows that the second
one replays the recorded steps instead of running them again and finishes the order.

Run the worker half directly with ``python -m durable.demo DB``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio

from durable.context import DurableContext
from durable.engine import Engine
from durable.events import HistoryEvent
from durable.types import RetryPolicy, StepSemantics

__all__ = ["build_engine", "run_demo"]

COOL_OFF = timedelta(seconds=2)


def build_engine(db: str) -> Engine:
    """The demo app: an engine on ``db`` with the classic order workflow registered."""
    engine = Engine(db, poll_interval=0.05)
    pid = os.getpid()

    def say(text: str) -> None:
        print(f"  [worker {pid}] {text}", flush=True)

    async def reserve_inventory(items: list[str]) -> dict[str, Any]:
        say(f"reserve_inventory: reserving {len(items)} items")
        return {"reservationId": "r-" + "-".join(items)}

    attempts: list[int] = []

    def charge(amount: float) -> dict[str, Any]:
        attempts.append(1)
        if not os.environ.get("DURABLE_DEMO_RESUMED") and len(attempts) == 1:
            say(f"charge: {amount:.2f} -> payment gateway timeout (attempt 1 fails)")
            raise TimeoutError("payment gateway timeout")
        say(f"charge: {amount:.2f} -> charged")
        return {"id": "pay-7731"}

    async def create_shipment(order_id: str, inventory: dict[str, Any]) -> dict[str, Any]:
        say(f"create_shipment: shipping order {order_id} ({inventory['reservationId']})")
        return {"trackingNumber": "1Z-" + order_id.upper()}

    @engine.workflow
    async def place_order(ctx: DurableContext, order: dict[str, Any]) -> dict[str, Any]:
        inventory = await ctx.step(reserve_inventory, order["items"])
        payment = await ctx.step(
            charge,
            order["amount"],
            name="process-payment",
            retry=RetryPolicy(max_attempts=5, initial_delay=1),
            semantics=StepSemantics.AT_MOST_ONCE_PER_RETRY,
        )
        if not ctx.is_replaying:
            say(f"waiting {COOL_OFF.total_seconds():g} s on the cool-off timer (suspended)")
        await ctx.wait(COOL_OFF, name="cool-off")
        shipment = await ctx.step(create_shipment, order["id"], inventory)
        return {
            "status": "completed",
            "paymentId": payment["id"],
            "tracking": shipment["trackingNumber"],
        }

    return engine


async def _worker_main(db: str, execution_id: str) -> None:
    async with build_engine(db) as engine:
        await engine.handle(execution_id).result(timeout=120)


def _spawn_worker(db: str, execution_id: str, *, resumed: bool) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if resumed:
        env["DURABLE_DEMO_RESUMED"] = "1"
    return subprocess.Popen([sys.executable, "-m", "durable.demo", db, execution_id], env=env)


async def _history(db: str, execution_id: str) -> list[HistoryEvent]:
    async with Engine(db, worker=False) as client:
        return await client.history(execution_id)


async def _wait_until(
    db: str, execution_id: str, done: Callable[[list[HistoryEvent]], bool], worker: Any
) -> list[HistoryEvent]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = await _history(db, execution_id)
        if done(events):
            return events
        if worker.poll() is not None and not done(events):
            raise RuntimeError(f"the demo worker exited early (code {worker.returncode})")
        await anyio.sleep(0.05)
    raise RuntimeError("the demo did not make progress within 60 s")


def _timeline(events: list[HistoryEvent]) -> str:
    start = events[0].timestamp
    lines = []
    for event in events:
        offset = (event.timestamp - start).total_seconds()
        label = event.name or ""
        extra = ""
        if "attempt" in event.details:
            extra = f" attempt {event.details['attempt']}"
        if "error" in event.details:
            extra += f" ({event.details['error'].type}: {event.details['error'].message})"
        lines.append(
            f"  {event.event_id:>3}  +{offset:6.2f}s  {event.event_type:<22}{label}{extra}"
        )
    return "\n".join(lines)


async def run_demo(db: str) -> dict[str, Any]:
    """Run the whole demo against ``db``; prints what happens and returns the order result."""
    execution_id = f"order-{int(time.time() * 1000) % 10**8}"
    print(f"durable demo: database {db}, execution {execution_id}\n")
    async with Engine(db, worker=False) as client:
        await client.start(
            "place_order",
            {"id": execution_id, "items": ["book", "lamp"], "amount": 42.5},
            execution_id=execution_id,
        )
    print("1. a worker process picks the order up:")
    worker = _spawn_worker(db, execution_id, resumed=False)
    await _wait_until(
        db, execution_id, lambda ev: any(e.event_type == "WaitStarted" for e in ev), worker
    )
    print(f"\n2. the workflow is suspended on its timer: killing worker {worker.pid} (SIGKILL)")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    before = await _history(db, execution_id)
    print(f"   {len(before)} events are safe in the log:\n{_timeline(before)}\n")
    print("3. a new worker process starts; it replays the recorded steps without running them:")
    worker = _spawn_worker(db, execution_id, resumed=True)
    await anyio.to_thread.run_sync(worker.wait)
    async with Engine(db, worker=False) as client:
        result: dict[str, Any] = await client.handle(execution_id).result(timeout=60)
        events = await client.history(execution_id)
    print(f"\n4. the order completed: {result}\n")
    print(f"full history ({len(events)} events):\n{_timeline(events)}")
    print(f"\ninspect it again with: durable history {execution_id} --db {db} --json")
    return result


if __name__ == "__main__":
    anyio.run(_worker_main, sys.argv[1], sys.argv[2])
