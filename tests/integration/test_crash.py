"""Durability: kill a real worker process with SIGKILL mid-workflow, restart it, check
that no checkpoint was lost and no step ran more often than its semantics allow."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from durable import Engine, ExecutionNotFoundError, HistoryEvent
from tests.helpers import children_of, has_exited

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, params=["thread", "process", "auto"])
def writer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every crash test with the store's writer thread, with its writer process, and with
    the default writer, made to start its process at the first write (the thread writes
    until the process is ready, while the workflow runs)."""
    monkeypatch.setenv("CRASH_APP_WRITER", request.param)
    return str(request.param)


def spawn(
    db: Path, marks: Path, *args: str, hang: str = "", skew: float = 0
) -> subprocess.Popen[str]:
    env = {**os.environ, "CRASH_APP_HANG": hang, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.crash_app",
            str(db),
            str(marks),
            *args,
            "--skew",
            str(skew),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_mark(marks: Path, text: str, proc: subprocess.Popen[str], limit: float = 30) -> None:
    """Wait (polling a file, not a timer) until the worker process has written ``text``."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if marks.exists() and text in marks.read_text().splitlines():
            return
        if proc.poll() is not None:
            raise AssertionError(f"worker exited early: {proc.communicate()}")
        time.sleep(0.02)
    raise AssertionError(f"worker never wrote {text!r}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    proc.communicate()


def finish(proc: subprocess.Popen[str]) -> Any:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


async def history(db: Path, execution_id: str) -> list[HistoryEvent]:
    """The history as another process sees it (empty until the execution exists)."""
    async with Engine(str(db), worker=False) as client:
        try:
            return await client.history(execution_id)
        except ExecutionNotFoundError:
            return []


def count(marks: Path, text: str) -> int:
    return marks.read_text().splitlines().count(text)


def types_of(events: list[HistoryEvent]) -> list[str]:
    return [event.event_type for event in events]


async def test_sigkill_mid_step_at_least_once_reruns_only_the_unfinished_step(
    tmp_path: Path,
) -> None:
    db, marks = tmp_path / "w.db", tmp_path / "marks"
    worker = spawn(db, marks, "run", "mid_step", "e1", "AT_LEAST_ONCE_PER_RETRY", hang="second")
    wait_for_mark(marks, "second started", worker)
    kill(worker)
    before = await history(db, "e1")
    assert types_of(before)[:3] == ["ExecutionStarted", "StepStarted", "StepSucceeded"]

    restarted = spawn(db, marks, "resume", "e1")
    assert finish(restarted) == ["first done", "second done"]
    after = await history(db, "e1")
    assert [e.raw for e in after[: len(before)]] == [e.raw for e in before]  # nothing lost
    assert count(marks, "first ran") == 1
    assert count(marks, "second started") == 2  # re-run: it had not completed
    assert count(marks, "second finished") == 1
    exits = [e for e in after if e.event_type == "InvocationCompleted" and "error" in e.details]
    assert [e.details["error"].type for e in exits] == ["Runtime.ExitError"]
    second = [e for e in after if e.name == "second"]
    assert [e.event_type for e in second] == ["StepStarted", "StepSucceeded"]
    assert second[-1].details["attempt"] == 1  # the same attempt, run again
    assert types_of(after)[-2:] == ["InvocationCompleted", "ExecutionSucceeded"]


async def test_sigkill_mid_step_at_most_once_never_reruns_the_attempt(tmp_path: Path) -> None:
    db, marks = tmp_path / "w.db", tmp_path / "marks"
    worker = spawn(db, marks, "run", "mid_step", "e2", "AT_MOST_ONCE_PER_RETRY", hang="second")
    wait_for_mark(marks, "second started", worker)
    kill(worker)
    before = await history(db, "e2")
    assert types_of(before)[-1] == "StepStarted"  # the start was durable before the body ran

    restarted = spawn(db, marks, "resume", "e2")
    assert finish(restarted) == ["first done", "second done"]
    after = await history(db, "e2")
    assert [e.raw for e in after[: len(before)]] == [e.raw for e in before]
    assert count(marks, "first ran") == 1
    assert count(marks, "second started") == 2  # attempt 1 (killed) and attempt 2, never 1 again
    second = [e for e in after if e.name == "second"]
    assert [(e.event_type, e.details["attempt"]) for e in second] == [
        ("StepStarted", 1),
        ("StepFailed", 1),
        ("StepStarted", 2),
        ("StepSucceeded", 2),
    ]
    assert second[1].details["error"].type == "StepInterruptedError"


def wait_until_exited(pids: list[int], limit: float = 30) -> None:
    """Wait (polling /proc, not a timer) until every one of ``pids`` has exited."""
    end = time.monotonic() + limit
    while not all(has_exited(pid) for pid in pids):
        assert time.monotonic() < end, f"the writer process {pids} outlived its engine"
        time.sleep(0.02)


def wait_for_children(pid: int, count: int, limit: float = 30) -> None:
    """Wait (polling /proc, not a timer) until ``pid`` has ``count`` child processes."""
    end = time.monotonic() + limit
    while len(children_of(pid)) != count:
        assert time.monotonic() < end, f"{pid} never had {count} child process(es)"
        time.sleep(0.02)


async def test_the_writer_process_ends_with_a_killed_engine(tmp_path: Path, writer: str) -> None:
    db, marks = tmp_path / "w.db", tmp_path / "marks"
    worker = spawn(db, marks, "run", "mid_step", "e5", "AT_LEAST_ONCE_PER_RETRY", hang="second")
    wait_for_mark(marks, "second started", worker)
    if writer == "auto":  # started in the background at the first write: wait for it
        wait_for_children(worker.pid, 1)
    children = children_of(worker.pid)
    assert len(children) == (0 if writer == "thread" else 1)
    kill(worker)
    wait_until_exited(children)
    restarted = spawn(db, marks, "resume", "e5")
    assert finish(restarted) == ["first done", "second done"]
    assert count(marks, "first ran") == 1


async def test_sigkill_mid_wait_keeps_the_timer_and_fires_it_once(tmp_path: Path) -> None:
    db, marks = tmp_path / "w.db", tmp_path / "marks"
    worker = spawn(db, marks, "run", "mid_wait", "e3")
    wait_for_mark(marks, "before ran", worker)
    # the wait is recorded once the invocation ends; read it from outside
    end = time.monotonic() + 30
    while "WaitStarted" not in types_of(before := await history(db, "e3")):
        assert time.monotonic() < end, "the wait was never recorded"
        await anyio.sleep(0.02)
    kill(worker)

    restarted = spawn(db, marks, "resume", "e3", skew=3601)  # an hour later
    assert finish(restarted) == "waited"
    after = await history(db, "e3")
    assert [e.raw for e in after[: len(before)]] == [e.raw for e in before]
    assert count(marks, "before ran") == 1
    assert count(marks, "after ran") == 1
    assert types_of(after).count("WaitStarted") == 1
    assert types_of(after).count("WaitSucceeded") == 1


def callback_id_from(marks: Path) -> str:
    [line] = [x for x in marks.read_text().splitlines() if x.startswith("callback ")]
    return line.split(" ", 1)[1]


async def test_a_callback_answered_from_another_process_resumes_the_worker(tmp_path: Path) -> None:
    db, marks = tmp_path / "w.db", tmp_path / "marks"
    worker = spawn(db, marks, "run", "approval", "a1")
    end = time.monotonic() + 30
    while not (marks.exists() and "callback " in marks.read_text()):
        assert time.monotonic() < end, "no callback handed out"
        assert worker.poll() is None, "the worker exited early"
        await anyio.sleep(0.02)
    sender = spawn(db, marks, "send", callback_id_from(marks), '{"approved": true}')
    assert finish(sender) is None  # a client-only engine in its own process
    assert finish(worker) == {"approved": True}
    assert count(marks, "after ran") == 1


async def test_sigkill_while_waiting_on_a_callback_answered_while_down(tmp_path: Path) -> None:
    db, marks = tmp_path / "w.db", tmp_path / "marks"
    worker = spawn(db, marks, "run", "approval", "a2")
    end = time.monotonic() + 30
    # suspended on the callback: the hand-out step's result is committed
    while (before := await history(db, "a2"))[-1:] == [] or not (
        before[-1].event_type == "InvocationCompleted"
        and any(e.name == "hand-out" and e.event_type == "StepSucceeded" for e in before)
    ):
        assert time.monotonic() < end, "no callback handed out"
        assert worker.poll() is None, "the worker exited early"
        await anyio.sleep(0.02)
    kill(worker)
    sender = spawn(db, marks, "send", callback_id_from(marks), '"yes"')
    assert finish(sender) is None  # answered while no worker runs

    restarted = spawn(db, marks, "resume", "a2")
    assert finish(restarted) == "yes"
    after = await history(db, "a2")
    assert [e.raw for e in after[: len(before)]] == [e.raw for e in before]
    assert count(marks, "after ran") == 1
    assert len([x for x in marks.read_text().splitlines() if x.startswith("callback ")]) == 1
    assert types_of(after).count("CallbackSucceeded") == 1


async def test_sigkill_mid_map_resumes_without_rerunning_finished_items(tmp_path: Path) -> None:
    db, marks = tmp_path / "w.db", tmp_path / "marks"
    # i2 hangs: i0, i1 and i3 finish (their process step is committed before their confirm
    # step runs), i2 is running when the process dies
    worker = spawn(db, marks, "run", "mid_map", "m1", hang="i2")
    wait_for_mark(marks, "i2 started", worker)
    wait_for_mark(marks, "i3 recorded", worker)
    kill(worker)
    before = await history(db, "m1")

    restarted = spawn(db, marks, "resume", "m1")
    assert finish(restarted) == ["i0 done", "i1 done", "i2 done", "i3 done"]
    after = await history(db, "m1")
    assert [e.raw for e in after[: len(before)]] == [e.raw for e in before]
    for item in ("i0", "i1", "i3"):
        assert count(marks, f"{item} started") == 1, item
    assert count(marks, "i2 started") == 2  # running when killed: run again (at least once)
    assert count(marks, "i2 finished") == 1
    iterations = [e for e in after if e.sub_type == "MapIteration"]
    assert [e.event_type for e in iterations].count("ContextSucceeded") == 4
