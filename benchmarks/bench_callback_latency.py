"""How soon a worker process resumes a workflow after another process answers its callback.

Run from the repository root::

    python benchmarks/bench_callback_latency.py [--n 30] [--poll 0.2]

A worker process (``durable.Engine`` with ``poll_interval=--poll``) runs executions that
wait on a callback. This process, with a client-only engine on the same SQLite file,
answers each callback and measures the time until the execution has succeeded (it polls
the file every millisecond for that, so the figure includes up to ~1 ms of its own). The
answer marks the execution due (``wake_at = now``) in its own transaction; the worker sees
it at its next look at the store, at most ``--poll`` seconds later, then claims, replays
and finishes the execution.

It only prints figures; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from _machine import print_machine

from durable import Engine, ExecutionStatus

WORKER = """
import anyio, sys
from durable import DurableContext, Engine

engine = Engine(sys.argv[1], poll_interval=float(sys.argv[2]))

@engine.workflow
async def approval(ctx: DurableContext) -> object:
    cb = await ctx.create_callback()
    return await cb.result()

async def main() -> None:
    async with engine:
        print("ready", flush=True)
        await anyio.sleep(3600)

anyio.run(main)
"""


async def measure(db: str, n: int) -> list[float]:
    latencies: list[float] = []
    async with Engine(db, worker=False) as client:
        for i in range(n):
            handle = await client.start("approval", None, execution_id=f"a{i}")
            callback_id = None
            while callback_id is None:
                events = await client.history(handle.execution_id)
                callback_id = next(
                    (e.details["callback_id"] for e in events if "callback_id" in e.details), None
                )
                if callback_id is None:
                    await anyio.sleep(0.001)
            await anyio.sleep(0.05)  # let the worker suspend: answer a sleeping workflow
            sent = time.perf_counter()
            await client.send_callback_success(callback_id, {"i": i})
            while (await client.get(handle.execution_id)).status is ExecutionStatus.RUNNING:  # noqa: ASYNC110 - another process finishes it
                await anyio.sleep(0.001)
            latencies.append(time.perf_counter() - sent)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description="cross-process callback latency")
    parser.add_argument("--n", type=int, default=30)
    parser.add_argument("--poll", type=float, default=0.2, help="the worker's poll_interval")
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="durable-cb-")
    print_machine(directory)
    print("command     python benchmarks/bench_callback_latency.py " + shlex.join(sys.argv[1:]))
    db = str(Path(directory) / "cb.db")
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, db, str(args.poll)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert worker.stdout is not None
        worker.stdout.readline()
        latencies = anyio.run(measure, db, args.n)
    finally:
        worker.terminate()
        worker.wait()
    ms = sorted(x * 1000 for x in latencies)
    figures = {
        "worker poll_interval (ms)": args.poll * 1000,
        "answers": len(ms),
        "latency p50 (ms)": round(statistics.median(ms), 1),
        "latency p95 (ms)": round(ms[int(0.95 * (len(ms) - 1))], 1),
        "latency max (ms)": round(ms[-1], 1),
    }
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
