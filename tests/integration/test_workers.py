"""Standalone workers: several processes on one SQLite file, SIGKILL takeover, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

from durable import Engine, ExecutionStatus

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def durable_cli(
    *args: str, env: dict[str, str] | None = None, **kw: object
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from durable.cli import main; main()", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,  # type: ignore[call-overload]
    )


def worker(db: Path, marks: Path, name: str, **extra: str) -> subprocess.Popen[str]:
    env = {"DURABLE_DB": str(db), "WORKER_MARKS": str(marks), "WORKER_NAME": name, **extra}
    return durable_cli(
        "worker",
        "tests.integration.worker_app:engine",
        "--concurrency",
        "4",
        "--grace",
        "5",
        env=env,
    )


async def start_jobs(db: Path, count: int) -> list[str]:
    async with Engine(str(db), worker=False) as client:
        return [
            (await client.start("job", i, execution_id=f"job-{i}")).execution_id
            for i in range(count)
        ]


async def wait_all_done(db: Path, ids: list[str], limit: float = 60) -> None:
    """Poll the shared file (other processes do the work) until every execution ended."""
    end = time.monotonic() + limit
    async with Engine(str(db), worker=False) as client:
        while True:
            statuses = [(await client.get(i)).status for i in ids]
            if all(s is not ExecutionStatus.RUNNING for s in statuses):
                assert set(statuses) == {ExecutionStatus.SUCCEEDED}
                return
            assert time.monotonic() < end, Counter(statuses)
            await anyio.sleep(0.05)


def lines(marks: Path) -> list[list[str]]:
    return [line.split() for line in marks.read_text().splitlines()]


def stop(proc: subprocess.Popen[str], sig: signal.Signals = signal.SIGTERM) -> tuple[int, str]:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    return proc.returncode, err


async def test_two_workers_share_one_file_and_record_every_step_once(tmp_path: Path) -> None:
    db, marks = tmp_path / "shared.db", tmp_path / "marks"
    async with Engine(str(db), worker=False):
        pass  # create the schema before two processes race to
    workers = [worker(db, marks, "w1"), worker(db, marks, "w2")]
    ids = await start_jobs(db, 40)
    await wait_all_done(db, ids)
    for proc in workers:
        code, err = stop(proc)
        assert code == 0, err
    ends = [(x[1], x[2]) for x in lines(marks) if x[0] == "end"]
    assert Counter(ends) == Counter({(i, s): 1 for i in ids for s in "abc"})  # exactly once
    by_worker = Counter(x[3] for x in lines(marks) if x[0] == "end")
    assert set(by_worker) == {"w1", "w2"}  # both took part
    async with Engine(str(db), worker=False) as client:
        for execution_id in ids:
            history = await client.history(execution_id)
            done = [e.name for e in history if e.event_type == "StepSucceeded"]
            assert done == ["a", "b", "c"]


async def test_a_killed_workers_executions_are_taken_over(tmp_path: Path) -> None:
    db, marks = tmp_path / "shared.db", tmp_path / "marks"
    async with Engine(str(db), worker=False):
        pass
    slow = {"WORKER_LEASE": "1", "WORKER_STEP_SECONDS": "30"}
    doomed = worker(db, marks, "doomed", **slow)
    ids = await start_jobs(db, 3)
    end = time.monotonic() + 30
    while not (marks.exists() and len(lines(marks)) >= 3):
        assert time.monotonic() < end, "the first worker never started the steps"
        await anyio.sleep(0.02)
    stop(doomed, signal.SIGKILL)
    survivor = worker(db, marks, "survivor", WORKER_LEASE="1")
    await wait_all_done(db, ids)
    code, err = stop(survivor)
    assert code == 0, err
    ran = lines(marks)
    assert not [x for x in ran if x[0] == "end" and x[3] == "doomed"]
    ends = Counter((x[1], x[2]) for x in ran if x[0] == "end")
    assert ends == Counter({(i, s): 1 for i in ids for s in "abc"})
    async with Engine(str(db), worker=False) as client:
        history = await client.history(ids[0])
    exits = [e for e in history if e.event_type == "InvocationCompleted" and "error" in e.details]
    assert [e.details["error"].type for e in exits] == ["Runtime.ExitError"]


async def test_sigterm_lets_running_steps_finish_and_hands_over(tmp_path: Path) -> None:
    db, marks = tmp_path / "shared.db", tmp_path / "marks"
    first = worker(db, marks, "first", WORKER_STEP_SECONDS="1")
    [execution_id] = await start_jobs(db, 1)
    end = time.monotonic() + 30
    while not (marks.exists() and "start" in marks.read_text()):
        assert time.monotonic() < end
        await anyio.sleep(0.02)
    code, err = stop(first)  # mid-step: the step gets its grace period
    assert code == 0, err
    # stderr is not a terminal: structlog writes JSON lines
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    by_event = {entry["event"]: entry for entry in logged}
    assert by_event["shutting down"]["signal"] == "SIGTERM"
    assert "worker started" in by_event
    assert "worker stopped" in by_event
    assert "worker stopped" in err
    async with Engine(str(db), worker=False) as client:
        history = await client.history(execution_id)
        row = await client.store.get_execution(execution_id)
    assert [e.name for e in history if e.event_type == "StepSucceeded"] == ["a"]
    assert "b" not in [e.name for e in history if e.event_type == "StepStarted"]
    assert row is not None
    assert row.lease_owner is None  # released, not left to expire
    second = worker(db, marks, "second")
    await wait_all_done(db, [execution_id])
    code, err = stop(second)
    assert code == 0, err
    ends = Counter((x[2], x[3]) for x in lines(marks) if x[0] == "end")
    assert ends == Counter({("a", "first"): 1, ("b", "second"): 1, ("c", "second"): 1})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module:engine", "cannot import 'no_such_module': ModuleNotFoundError"),
        ("tests.integration.worker_app:nope", "has no attribute 'nope'"),
        ("tests.integration.worker_app:work", "is a function, not a durable.Engine"),
        ("tests.integration.worker_app", "expected MODULE:ENGINE"),
    ],
)
def test_bad_app_specs_are_one_line_errors(tmp_path: Path, spec: str, message: str) -> None:
    env = {"DURABLE_DB": str(tmp_path / "x.db"), "WORKER_MARKS": str(tmp_path / "m")}
    proc = durable_cli("worker", spec, env=env)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
