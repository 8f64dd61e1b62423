"""Compare the engine at two commits in alternating runs: did a change make it faster?

Run from the repository root (a git checkout)::

    python benchmarks/compare_commits.py BASE [--head REV] [--rounds 4] [--repeat 3]
        [--workloads s1,s2,s3] [--steps 2000] [--n 500] [--k 10] [--replay-steps 10000]
        [--dir DIR]

On a shared or virtual machine the speed of the disk and even of the CPU drifts by tens of
percent between runs a minute apart, so two benchmark runs made one after the other say
little about a change. This script checks out ``BASE`` (and ``--head``, default: the working
tree) into temporary git worktrees and, round after round, runs the same workloads on each
side, alternating which side goes first, each run in a fresh Python process whose
``durable`` is imported from that side's tree; within a run each workload is repeated
``--repeat`` times and its median kept (a process that has warmed up, as a server has). The
workloads are always this directory's (``bench_steps.py``, ``bench_concurrency.py``), so both
sides run identical benchmark code:

* ``s1``: S1 (one workflow, ``--steps`` sequential steps) on SQLite and on a ``MemoryStore``;
* ``s2``: S2 (``--n`` executions x ``--k`` steps at once) on SQLite and on a ``MemoryStore``;
* ``s3``: a ``--replay-steps`` history recorded by that side, then replayed after a restart
  (in ms).

It prints every run and, per figure, the median of each side's runs and head over base. It
only prints figures; nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_steps import session

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUNNER = HERE / "_ab_runner.py"


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached checkout of ``rev`` in a temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="durable-rev-") as tmp:
        path = Path(tmp) / "tree"
        git("worktree", "add", "--detach", str(path), rev)
        try:
            yield path
        finally:
            git("worktree", "remove", "--force", str(path))


def run_side(tree: Path, args: argparse.Namespace, directory: Path) -> dict[str, float]:
    """One run of the workloads with ``durable`` imported from ``tree``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(HERE)]))
    params = [args.workloads, args.repeat, args.steps, args.n, args.k, args.replay_steps]
    params.append(directory)
    done = subprocess.run(
        [sys.executable, str(RUNNER), *map(str, params)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the run on {tree} failed:\n{done.stderr[-2000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    if Path(answer["durable"]).resolve() != (tree / "durable").resolve():
        raise RuntimeError(f"imported durable from {answer['durable']}, not from {tree}")
    figures: dict[str, float] = answer["figures"]
    return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Alternating runs of two commits.")
    parser.add_argument("base", help="the commit to compare against (e.g. HEAD~3, a tag)")
    parser.add_argument("--head", help="the other commit (default: the working tree)")
    parser.add_argument("--rounds", type=int, default=4, help="runs (processes) per side")
    parser.add_argument(
        "--repeat", type=int, default=3, help="each workload's repeats in a run (median)"
    )
    parser.add_argument(
        "--workloads",
        default="s1,s2,s3",
        help="any of s1,s2,s3,s2p (S2 with the writer process: commits that have it)",
    )
    parser.add_argument("--steps", type=int, default=2000, help="S1: steps")
    parser.add_argument("--n", type=int, default=500, help="S2: executions at once")
    parser.add_argument("--k", type=int, default=10, help="S2: steps per execution")
    parser.add_argument("--replay-steps", type=int, default=10_000, help="S3: steps replayed")
    parser.add_argument("--dir", help="where to create the databases (default: the temp dir)")
    args = parser.parse_args(argv)
    unknown = set(args.workloads.split(",")) - {"s1", "s2", "s3", "s2p"}
    if unknown:
        parser.error(f"unknown workloads: {', '.join(sorted(unknown))}")
    if min(args.rounds, args.repeat, args.steps, args.n, args.k, args.replay_steps) < 1:
        parser.error("--rounds, --repeat, --steps, --n, --k and --replay-steps must be >= 1")
    return args


def print_results(runs: dict[str, list[dict[str, float]]], labels: dict[str, str]) -> None:
    names = list(runs["base"][0])
    width = max(len(name) for name in names)
    for name in names:
        print(f"\n{name}")
        for side in ("base", "head"):
            values = "  ".join(f"{run[name]:>10,.1f}" for run in runs[side])
            print(f"  {labels[side]:<24} {values}")
    print(f"\n{'figure':<{width}}  {'base median':>12}  {'head median':>12}  head/base")
    print(f"{'-' * width}  {'-' * 12}  {'-' * 12}  {'-' * 9}")
    for name in names:
        base = statistics.median(run[name] for run in runs["base"])
        head = statistics.median(run[name] for run in runs["head"])
        print(f"{name:<{width}}  {base:>12,.1f}  {head:>12,.1f}  {head / base:9.3f}")
    print("(steps/s: higher is better; ms: lower is better)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    base_rev = git("rev-parse", "--short", args.base)
    labels = {"base": f"base {base_rev}"}
    with (
        session(args.dir, keep=False, capture_logs=False) as directory,
        worktree(base_rev) as base_tree,
        contextmanager_or_tree(args.head) as head_tree,
    ):
        labels["head"] = f"head {args.head or 'working tree'}"
        trees = {"base": base_tree, "head": head_tree}
        runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
        for round_ in range(args.rounds):
            order = ("base", "head") if round_ % 2 == 0 else ("head", "base")
            for side in order:
                print(f"round {round_ + 1}/{args.rounds}: {labels[side]} ...", file=sys.stderr)
                runs[side].append(run_side(trees[side], args, directory))
        print_results(runs, labels)


@contextmanager
def contextmanager_or_tree(rev: str | None) -> Iterator[Path]:
    """``rev`` checked out, or the working tree itself when ``rev`` is ``None``."""
    if rev is None:
        yield ROOT
        return
    with worktree(git("rev-parse", "--short", rev)) as tree:
        yield tree


if __name__ == "__main__":
    main()
