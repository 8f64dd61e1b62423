"""An application module that ``durable worker tests.integration.worker_app:engine`` runs.

Configured by environment variables so tests can point several worker processes at one
database: ``DURABLE_DB`` (the file), ``WORKER_MARKS`` (a file every step appends a line to),
``WORKER_NAME`` (who ran it), ``WORKER_LEASE`` (lease seconds), ``WORKER_STEP_SECONDS`` (how
long each step works).
"""

from __future__ import annotations

import os

import anyio

from durable import DurableContext, Engine

engine = Engine(
    os.environ["DURABLE_DB"],
    lease_time=float(os.environ.get("WORKER_LEASE", "5")),
    poll_interval=0.05,
)


def _mark(text: str) -> None:
    # one short O_APPEND write per line: lines from several processes never interleave
    fd = os.open(os.environ["WORKER_MARKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{text}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


async def work(execution_id: str, step: str) -> str:
    who = os.environ.get("WORKER_NAME", "?")
    _mark(f"start {execution_id} {step} {who}")
    await anyio.sleep(float(os.environ.get("WORKER_STEP_SECONDS", "0.02")))  # simulated work
    _mark(f"end {execution_id} {step} {who}")
    return f"{step} by {who}"


@engine.workflow
async def job(ctx: DurableContext, n: int) -> list[str]:
    done = []
    for step in ("a", "b", "c"):
        done.append(await ctx.step(work, ctx.execution_id, step, name=step))
    return done
