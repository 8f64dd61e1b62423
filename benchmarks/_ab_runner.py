"""One side of ``compare_commits.py``: run each workload ``repeat`` times in this process,
print the medians as JSON.

``compare_commits.py`` starts this script with ``PYTHONPATH`` pointing at the commit to
measure, so ``durable`` comes from that commit while the workloads (``bench_steps``,
``bench_concurrency``) come from this directory: both sides run the same benchmark code.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench_concurrency import concurrent_once
from bench_steps import copy_database, s1_once, s3_record, s3_replay_once

import durable


def main(argv: list[str]) -> None:
    workloads = argv[0].split(",")
    repeat, s1_steps, s2_n, s2_k, s3_steps = map(int, argv[1:6])
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="durable-ab-", dir=argv[6]) as tmp:
        work = Path(tmp)
        files = (work / f"{i}.db" for i in itertools.count())

        def median_of(once: Callable[[Path], float]) -> float:
            return statistics.median(once(next(files)) for _ in range(repeat))

        if "s1" in workloads:
            figures["S1 steps/s"] = median_of(lambda p: asyncio.run(s1_once(p, s1_steps)))
            figures["S1 engine alone steps/s"] = median_of(
                lambda p: asyncio.run(s1_once(p, s1_steps, store="memory"))
            )
        if "s2" in workloads:
            figures["S2 steps/s"] = median_of(lambda p: asyncio.run(concurrent_once(p, s2_n, s2_k)))
            figures["S2 engine alone steps/s"] = median_of(
                lambda p: asyncio.run(concurrent_once(p, s2_n, s2_k, store="memory"))
            )
        if "s2p" in workloads:  # commits since the writer process only
            figures["S2 writer process steps/s"] = median_of(
                lambda p: asyncio.run(concurrent_once(p, s2_n, s2_k, store="process"))
            )
        if "s3" in workloads:
            master = work / "s3.db"
            asyncio.run(s3_record(master, s3_steps))  # recorded by this side's own durable

            def replay(copy: Path) -> float:
                copy_database(master, copy)
                return asyncio.run(s3_replay_once(copy, s3_steps)).elapsed * 1000

            figures["S3 replay ms"] = median_of(replay)
    print(json.dumps({"durable": str(Path(durable.__file__).parent), "figures": figures}))


if __name__ == "__main__":
    main(sys.argv[1:])
