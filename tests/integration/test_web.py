"""The web UI (``durable.web.create_app``) and ``durable ui``."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from durable import DurableContext, Engine, Jitter, RetryPolicy, VirtualClock
from durable.web import create_app
from tests.helpers import advance_until, finished, has, settle

START = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
EVIL = "<script>alert('x')</script>"


def _charge(order_id: str, seen: dict[str, int]) -> dict[str, str]:
    seen[order_id] = seen.get(order_id, 0) + 1
    if seen[order_id] == 1:
        raise ConnectionError("payment gateway unreachable")
    return {"id": f"p-{order_id}"}


def _decline(order_id: str) -> None:
    raise ValueError(f"card declined for {order_id}")


def _engine(db: Path, clock: VirtualClock, *, worker: bool = True) -> Engine:
    engine = Engine(str(db), clock=clock, poll_interval=0.05, worker=worker, shutdown_grace=0)
    seen: dict[str, int] = {}

    @engine.workflow
    async def place_order(ctx: DurableContext, order: dict[str, Any]) -> dict[str, Any]:
        retry = RetryPolicy(max_attempts=3, initial_delay=2, jitter=Jitter.NONE)
        payment = await ctx.step(_charge, order["id"], seen, name="process-payment", retry=retry)
        await ctx.wait(timedelta(hours=1), name="cool-off")
        return {"payment": payment["id"]}

    @engine.workflow
    async def refund(ctx: DurableContext, order: dict[str, Any]) -> None:
        await ctx.step(_decline, order["id"], name="refund-card", retry=RetryPolicy.none())

    @engine.workflow
    async def approval(ctx: DurableContext, order: dict[str, Any]) -> dict[str, Any]:
        answer = await ctx.wait_for_callback(
            lambda callback_id: None, name="manager-approval", timeout=timedelta(days=7)
        )
        return {"approved": answer}

    return engine


async def _prepare(db: Path) -> dict[str, Any]:
    """o-1 SUCCEEDED (a retried step and a wait, ``<script>`` in its input), o-2 FAILED,
    o-3 RUNNING waiting on its callback."""
    clock = VirtualClock(START)
    facts: dict[str, Any] = {}
    async with _engine(db, clock) as engine:
        await engine.start("place_order", {"id": "o-1", "note": EVIL}, execution_id="o-1")
        await advance_until(engine, clock, "o-1", finished)
        await engine.start("refund", {"id": "o-2"}, execution_id="o-2")
        await advance_until(engine, clock, "o-2", finished)
        await engine.start("approval", {"id": "o-3"}, execution_id="o-3")
        history = await advance_until(engine, clock, "o-3", has("CallbackStarted"))
        await settle(engine)
        started = next(e for e in history if e.event_type == "CallbackStarted")
        facts["callback"] = started.details["callback_id"]
        facts["now"] = clock.now()
    return facts


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    db = tmp_path_factory.mktemp("web") / "orders.db"
    return db, anyio.run(_prepare, db)


@pytest.fixture
def orders(prepared: tuple[Path, dict[str, Any]], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of the prepared database each test may change."""
    source, facts = prepared
    db = tmp_path / "orders.db"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", f"{db}{suffix}")
    return db, facts


@asynccontextmanager
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://ui") as c:
            yield c


# -- HTML ------------------------------------------------------------------------------


async def test_list_page_shows_executions_newest_first_and_filters(
    orders: tuple[Path, dict[str, Any]],
) -> None:
    db, _ = orders
    async with client(create_app(str(db))) as c:
        page = await c.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        text = page.text
        for execution_id, status in (("o-1", "SUCCEEDED"), ("o-2", "FAILED"), ("o-3", "RUNNING")):
            assert f"href='/executions/{execution_id}'" in text
            assert status in text
        assert text.index("/executions/o-3") < text.index("/executions/o-2")
        assert text.index("/executions/o-2") < text.index("/executions/o-1")
        assert "ValueError: card declined for o-2" in text

        failed = (await c.get("/", params={"status": "failed"})).text
        assert "/executions/o-2" in failed
        assert "/executions/o-1" not in failed
        assert "/executions/o-3" not in failed

        orders_only = (await c.get("/", params={"workflow": "place_order"})).text
        assert "/executions/o-1" in orders_only
        assert "/executions/o-2" not in orders_only

        none = await c.get("/", params={"workflow": "<b>nope</b>"})
        assert "no executions found" in none.text
        assert "<b>nope</b>" not in none.text
        assert "&lt;b&gt;nope&lt;/b&gt;" in none.text

        bad = await c.get("/", params={"status": "SLEEPING"})
        assert bad.status_code == 400
        assert "unknown status" in bad.text


async def test_execution_page_shows_the_timeline_and_escapes_inputs(
    orders: tuple[Path, dict[str, Any]],
) -> None:
    db, facts = orders
    async with client(create_app(str(db))) as c:
        page = await c.get("/executions/o-1")
        assert page.status_code == 200
        text = page.text
        assert "<script>" not in text
        assert "&lt;script&gt;" in text
        assert "SUCCEEDED" in text
        assert "p-o-1" in text  # the result
        assert "Timeline" in text
        rows = [row for row in text.split("<tr>") if "process-payment" in row]
        assert len(rows) == 1
        payment = rows[0]
        assert "<td class='num'>2</td>" in payment  # two attempts
        assert "retried after 2s" in payment
        assert "class='bar SUCCEEDED'" in payment
        cool_off = next(row for row in text.split("<tr>") if "cool-off" in row)
        assert "wait 1h" in cool_off
        assert "<td class='num'>1h</td>" in cool_off  # it took the hour

        failed = (await c.get("/executions/o-2")).text
        assert "FAILED" in failed
        assert "card declined for o-2" in failed
        assert "refund-card" in failed

        waiting = (await c.get("/executions/o-3")).text
        assert "RUNNING" in waiting
        assert "manager-approval" in waiting
        assert facts["callback"] in waiting
        assert "waiting on" in waiting

        missing = await c.get("/executions/nope")
        assert missing.status_code == 404
        assert "ExecutionNotFoundError" in missing.text


async def test_mounted_in_a_host_app_with_its_engine(
    orders: tuple[Path, dict[str, Any]],
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    db, _ = orders
    async with Engine(str(db), worker=False) as engine:
        host = Starlette(routes=[Mount("/durable", create_app(engine))])
        transport = httpx.ASGITransport(app=host)
        async with httpx.AsyncClient(transport=transport, base_url="http://host") as c:
            page = await c.get("/durable/")
            assert page.status_code == 200
            assert "href='/durable/executions/o-1'" in page.text
            one = await c.get("/durable/executions/o-1")
            assert one.status_code == 200
            assert "href='/durable/'" in one.text
            api = await c.get("/durable/api/executions/o-2")
            assert api.json()["status"] == "FAILED"
        assert engine.store is not None  # still the host's engine, still open
        assert (await engine.get("o-1")).status.value == "SUCCEEDED"


# -- JSON API --------------------------------------------------------------------------


async def test_api_list_get_and_history(orders: tuple[Path, dict[str, Any]]) -> None:
    db, _ = orders
    async with client(create_app(str(db))) as c:
        listed = (await c.get("/api/executions")).json()
        assert [e["execution_id"] for e in listed] == ["o-3", "o-2", "o-1"]
        assert {e["status"] for e in listed} == {"RUNNING", "FAILED", "SUCCEEDED"}
        assert [e["execution_id"] for e in (await c.get("/api/executions?limit=1")).json()] == [
            "o-3"
        ]
        running = (await c.get("/api/executions", params={"status": "RUNNING"})).json()
        assert [e["execution_id"] for e in running] == ["o-3"]
        refunds = (await c.get("/api/executions", params={"workflow": "refund"})).json()
        assert [e["execution_id"] for e in refunds] == ["o-2"]

        one = (await c.get("/api/executions/o-1")).json()
        assert one["execution_id"] == "o-1"
        assert one["workflow"] == "place_order"
        assert one["status"] == "SUCCEEDED"
        assert one["input"] == {"id": "o-1", "note": EVIL}
        assert one["result"] == {"payment": "p-o-1"}
        assert one["error"] is None
        two = (await c.get("/api/executions/o-2")).json()
        assert two["error"]["type"] == "ValueError"

        history = await c.get("/api/executions/o-1/history")
        assert history.headers["content-type"] == "application/json"
        events = history.json()["Events"]
        assert events[0]["EventType"] == "ExecutionStarted"
        assert events[-1]["EventType"] == "ExecutionSucceeded"
        assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
        failed = next(e for e in events if e["EventType"] == "StepFailed")
        assert failed["Name"] == "process-payment"
        assert failed["StepFailedDetails"]["RetryDetails"]["NextAttemptDelaySeconds"] == 2


async def test_api_errors(orders: tuple[Path, dict[str, Any]]) -> None:
    db, facts = orders
    async with client(create_app(str(db))) as c:
        for method, url in (
            ("GET", "/api/executions/nope"),
            ("GET", "/api/executions/nope/history"),
            ("POST", "/api/executions/nope/stop"),
            ("POST", "/api/callbacks/nope/succeed"),
            ("POST", "/api/callbacks/nope/fail"),
        ):
            response = await c.request(method, url)
            assert response.status_code == 404, url
            error = response.json()["error"]
            assert set(error) == {"type", "message"}
            assert error["type"] in ("ExecutionNotFoundError", "CallbackNotFoundError")

        ended = await c.post("/api/executions/o-1/stop")
        assert ended.status_code == 409
        assert ended.json()["error"]["type"] == "ExecutionNotRunningError"

        bad = await c.post(f"/api/callbacks/{facts['callback']}/succeed", content=b"{nope")
        assert bad.status_code == 400
        assert "not valid JSON" in bad.json()["error"]["message"]
        bad_fail = await c.post(f"/api/callbacks/{facts['callback']}/fail", json=[1])
        assert bad_fail.status_code == 400
        assert (await c.get("/api/executions?status=nope")).status_code == 400
        assert (await c.get("/api/executions?limit=0")).status_code == 400
        assert (await c.get("/api/executions?limit=x")).status_code == 400

        ok = await c.post(f"/api/callbacks/{facts['callback']}/fail", json={"message": "no"})
        assert ok.status_code == 200
        again = await c.post(f"/api/callbacks/{facts['callback']}/succeed", json=True)
        assert again.status_code == 409
        assert again.json()["error"]["type"] == "CallbackAlreadyCompletedError"


async def test_api_stop(orders: tuple[Path, dict[str, Any]]) -> None:
    db, _ = orders
    async with client(create_app(str(db))) as c:
        stopped = await c.post("/api/executions/o-3/stop", json={"reason": "changed my mind"})
        assert stopped.status_code == 200
        assert stopped.json() == {"stopped": ["o-3"]}
        one = (await c.get("/api/executions/o-3")).json()
        assert one["status"] == "STOPPED"
        assert one["error"] == {"type": "ExecutionStopped", "message": "changed my mind"}
        assert (await c.post("/api/executions/o-3/stop")).status_code == 409
        page = (await c.get("/executions/o-3")).text
        assert "STOPPED" in page
        assert "CANCELLED" in page  # its pending callback


async def test_api_callback_succeed_then_a_worker_finishes_it(
    orders: tuple[Path, dict[str, Any]],
) -> None:
    db, facts = orders
    async with client(create_app(str(db))) as c:
        answer = await c.post(f"/api/callbacks/{facts['callback']}/succeed", json={"by": "ann"})
        assert answer.status_code == 200
        assert answer.json() == {"callback_id": facts["callback"], "status": "SUCCEEDED"}
        assert (await c.get("/api/executions/o-3")).json()["status"] == "RUNNING"

    clock = VirtualClock(facts["now"])
    async with _engine(db, clock) as worker:
        await advance_until(worker, clock, "o-3", finished)

    async with client(create_app(str(db))) as c:
        one = (await c.get("/api/executions/o-3")).json()
        assert one["status"] == "SUCCEEDED"
        assert one["result"] == {"approved": {"by": "ann"}}


# -- durable ui ------------------------------------------------------------------------


DURABLE = [sys.executable, "-c", "from durable.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.slow
def test_durable_ui_serves_on_localhost(prepared: tuple[Path, dict[str, Any]]) -> None:
    db, _ = prepared
    port = _free_port()
    proc = subprocess.Popen(
        [*DURABLE, "ui", "--port", str(port), "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        page = None
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert page is not None, "durable ui did not answer within 15 s"
        assert page.status_code == 200
        assert "/executions/o-1" in page.text
        # bound to the loopback address only
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex(("127.0.0.1", port)) == 0
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and out.stdout.strip():
            assert f"127.0.0.1:{port}" in out.stdout
            assert f"0.0.0.0:{port}" not in out.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
            proc.kill()
            proc.communicate()
    assert proc.returncode in (0, -signal.SIGTERM)


@pytest.mark.slow
def test_durable_ui_refuses_a_missing_database(tmp_path: Path) -> None:
    result = subprocess.run(
        [*DURABLE, "ui", "--db", str(tmp_path / "nope.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no database at" in result.stderr
    assert not (tmp_path / "nope.db").exists()
