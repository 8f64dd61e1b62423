"""The benchmark's workflow for DBOS Transact, imported only by ``compare_dbos.py``'s DBOS runs.

The same shape as ``bench_steps.sequential_steps``: ``n`` trivial async steps awaited one
after the other, each one checkpointed by DBOS before the workflow moves on.
"""

from __future__ import annotations

from dbos import DBOS


@DBOS.step()
async def noop(i: int) -> int:
    return i


@DBOS.workflow()
async def sequential_steps(n: int) -> int:
    total = 0
    for i in range(n):
        total += await noop(i)
    return total
