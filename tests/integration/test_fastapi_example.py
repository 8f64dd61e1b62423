"""examples/fastapi_app.py works as its docstring says: in process on a virtual clock, and
through the documented uvicorn command."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from durable import Engine, EventType, VirtualClock
from examples import fastapi_app
from examples.fastapi_app import APPROVAL_TIMEOUT, create_app
from tests.helpers import drive, settle

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class App:
    client: httpx.AsyncClient
    engine: Engine
    clock: VirtualClock

    async def order(self, order_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/orders/{order_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def events(self, order_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(f"/orders/{order_id}/history")
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["Events"]
        return events

    async def place_for_approval(self, order: dict[str, Any]) -> str:
        """POST a big order, let it run until it waits; returns its pending callback id."""
        response = await self.client.post("/orders", json=order)
        assert response.status_code == 202, response.text
        await settle(self.engine)
        pending = (await self.order(order["id"]))["pending_callback"]
        assert pending is not None, "the order does not wait for an approval"
        return str(pending["callback_id"])


@asynccontextmanager
async def running_app(tmp_path: Path) -> AsyncIterator[App]:
    """The example app on a SQLite file and a virtual clock, its lifespan entered (the ASGI
    transport does not run lifespan events)."""
    clock = VirtualClock()
    app = create_app(str(tmp_path / "orders.db"), clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://orders.test") as client:
            yield App(client, app.state.engine, clock)


def order(order_id: str, amount: float, *items: str) -> dict[str, Any]:
    return {
        "id": order_id,
        "items": [{"sku": sku, "qty": 1} for sku in items or ("book",)],
        "amount": amount,
    }


def step_names(events: list[dict[str, Any]]) -> list[str]:
    return [e["Name"] for e in events if e["EventType"] == EventType.STEP_SUCCEEDED]


async def test_small_order_completes_without_approval(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        response = await app.client.post("/orders", json=order("o-1", 25, "book", "pen"))
        assert response.status_code == 202
        assert response.headers["location"] == "/orders/o-1"
        body = response.json()
        assert body["execution_id"] == "o-1"
        assert body["status"] in ("RUNNING", "SUCCEEDED")  # it runs in the background
        await settle(app.engine)

        assert await app.order("o-1") == {
            "execution_id": "o-1",
            "status": "SUCCEEDED",
            "result": {
                "status": "completed",
                "paymentId": "pay-o-1",
                "trackingNumber": "1Z-o-1",
                "approvedBy": None,
            },
            "error": None,
            "pending_callback": None,
        }
        events = await app.events("o-1")
    assert step_names(events) == ["reserve_inventory", "process-payment", "create_shipment"]
    assert not [e for e in events if e["EventType"] == EventType.CALLBACK_STARTED]


async def test_same_order_twice_is_one_execution_and_another_body_is_409(
    tmp_path: Path,
) -> None:
    async with running_app(tmp_path) as app:
        first = await app.client.post("/orders", json=order("o-1", 25))
        await settle(app.engine)
        # the same order, spelled differently (key order, 25 vs 25.0): the same execution
        again = await app.client.post(
            "/orders", json={"amount": 25.0, "items": [{"qty": 1, "sku": "book"}], "id": "o-1"}
        )
        conflict = await app.client.post("/orders", json=order("o-1", 26))
        executions = await app.engine.list()
        events = await app.events("o-1")

    assert first.status_code == again.status_code == 202
    assert again.json() == {"execution_id": "o-1", "status": "SUCCEEDED"}
    assert conflict.status_code == 409
    assert conflict.json() == {"detail": "execution 'o-1' already exists with a different input"}
    assert [e.execution_id for e in executions] == ["o-1"]
    assert step_names(events).count("process-payment") == 1  # charged once


async def test_invalid_order_is_422_and_starts_nothing(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        no_items = await app.client.post("/orders", json={"id": "o-1", "items": [], "amount": 5})
        negative = await app.client.post("/orders", json=order("o-2", -5))
        bad_id = await app.client.post("/orders", json=order("o/3", 5))
        assert await app.engine.list() == []
    assert no_items.status_code == negative.status_code == bad_id.status_code == 422


async def test_big_order_waits_for_approval_then_completes(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        callback_id = await app.place_for_approval(order("o-2", 4800, "piano"))
        waiting = await app.order("o-2")
        assert waiting["status"] == "RUNNING"
        assert waiting["result"] is None
        expires = app.clock.now() + APPROVAL_TIMEOUT.total_seconds()
        assert waiting["pending_callback"] == {
            "callback_id": callback_id,
            "name": "manager-approval",
            "expires_at": datetime.fromtimestamp(expires, tz=UTC).isoformat(),
        }
        # the id GET returns is the one in the order's log
        started = [
            e for e in await app.events("o-2") if e["EventType"] == EventType.CALLBACK_STARTED
        ]
        assert [e["CallbackStartedDetails"]["CallbackId"] for e in started] == [callback_id]
        assert started[0]["CallbackStartedDetails"]["Timeout"] == 3 * 86_400

        answer = await app.client.post(
            f"/callbacks/{callback_id}/succeed", json={"approved": True, "by": "ana"}
        )
        assert answer.status_code == 204
        assert answer.content == b""
        await settle(app.engine)
        done = await app.order("o-2")
        events = await app.events("o-2")

    assert done["status"] == "SUCCEEDED"
    assert done["pending_callback"] is None
    assert done["result"] == {
        "status": "completed",
        "paymentId": "pay-o-2",
        "trackingNumber": "1Z-o-2",
        "approvedBy": "ana",
    }
    assert step_names(events) == [
        "reserve_inventory",
        "notify_manager",
        "process-payment",
        "create_shipment",
    ]


@pytest.mark.parametrize(
    ("action", "body", "reason"),
    [
        ("fail", {"error_type": "Rejected", "message": "over budget"}, "over budget"),
        ("succeed", {"approved": False, "reason": "duplicate order"}, "duplicate order"),
        ("succeed", None, "not approved"),
    ],
)
async def test_rejected_order_releases_inventory_and_is_not_charged(
    tmp_path: Path, action: str, body: dict[str, Any] | None, reason: str
) -> None:
    async with running_app(tmp_path) as app:
        callback_id = await app.place_for_approval(order("o-3", 2000))
        answer = await app.client.post(f"/callbacks/{callback_id}/{action}", json=body)
        assert answer.status_code == 204, answer.text
        await settle(app.engine)
        rejected = await app.order("o-3")
        events = await app.events("o-3")
    assert rejected["status"] == "SUCCEEDED"  # the workflow handled the rejection
    assert rejected["result"] == {"status": "rejected", "reason": reason}
    assert step_names(events) == ["reserve_inventory", "notify_manager", "release_inventory"]


async def test_unanswered_approval_times_out_and_cancels_the_order(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        callback_id = await app.place_for_approval(order("o-4", 1500))
        jumps = await drive(app.engine, app.clock, app.engine.handle("o-4"))
        cancelled = await app.order("o-4")
        late = await app.client.post(f"/callbacks/{callback_id}/succeed", json={"approved": True})
        events = await app.events("o-4")
    assert jumps == [APPROVAL_TIMEOUT.total_seconds()]  # one jump: nothing else woke it
    assert cancelled["result"] == {"status": "cancelled", "reason": "approval timed out"}
    assert cancelled["pending_callback"] is None
    assert late.status_code == 409
    assert EventType.CALLBACK_TIMED_OUT in [e["EventType"] for e in events]
    assert step_names(events)[-1] == "release_inventory"


async def test_payment_outage_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []

    def flaky_charge(order_id: str, amount: float) -> dict[str, Any]:
        calls.append(amount)
        if len(calls) < 3:
            raise ConnectionError("payment provider unreachable")
        return {"paymentId": f"pay-{order_id}", "amount": amount}

    monkeypatch.setattr(fastapi_app, "charge_card", flaky_charge)
    async with running_app(tmp_path) as app:
        await app.client.post("/orders", json=order("o-5", 40))
        jumps = await drive(app.engine, app.clock, app.engine.handle("o-5"))
        done = await app.order("o-5")
        events = await app.events("o-5")
    assert done["result"]["status"] == "completed"
    assert len(calls) == 3
    assert len(jumps) >= 2  # two retry delays on the virtual clock, no wall-clock sleep
    failed = [e for e in events if e["EventType"] == EventType.STEP_FAILED]
    assert [e["StepFailedDetails"]["RetryDetails"]["CurrentAttempt"] for e in failed] == [1, 2]
    assert {e["StepFailedDetails"]["Error"]["Payload"]["ErrorType"] for e in failed} == {
        "ConnectionError"
    }


async def test_declined_card_fails_the_order_after_releasing_inventory(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        callback_id = await app.place_for_approval(order("o-6", 20_000))
        await app.client.post(f"/callbacks/{callback_id}/succeed", json={"approved": True})
        await settle(app.engine)
        failed = await app.order("o-6")
        events = await app.events("o-6")
    assert failed["status"] == "FAILED"
    assert failed["result"] is None
    assert failed["error"] == {
        "type": "PaymentDeclinedError",
        "message": "card declined: 20000.00 is over the card limit",
    }
    # not retried: one attempt, then the compensation
    assert [e["EventType"] for e in events if e.get("Name") == "process-payment"] == [
        EventType.STEP_STARTED,
        EventType.STEP_FAILED,
    ]
    assert step_names(events)[-1] == "release_inventory"


async def test_unknown_order_is_404(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        status = await app.client.get("/orders/nope")
        history = await app.client.get("/orders/nope/history")
    assert status.status_code == history.status_code == 404
    assert status.json() == {"detail": "no execution with id 'nope'"}


async def test_unknown_callback_is_404(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        succeed = await app.client.post("/callbacks/nope/succeed", json={"approved": True})
        fail = await app.client.post(
            "/callbacks/nope/fail", json={"error_type": "Rejected", "message": "no"}
        )
    assert succeed.status_code == fail.status_code == 404
    assert succeed.json() == {"detail": "no callback has id 'nope'"}


async def test_answering_a_callback_twice_is_409(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        callback_id = await app.place_for_approval(order("o-7", 5000))
        first = await app.client.post(f"/callbacks/{callback_id}/succeed", json={"approved": True})
        again = await app.client.post(f"/callbacks/{callback_id}/succeed", json={"approved": True})
        fail = await app.client.post(
            f"/callbacks/{callback_id}/fail", json={"error_type": "Rejected", "message": "late"}
        )
        await settle(app.engine)
        done = await app.order("o-7")
    assert first.status_code == 204
    assert again.status_code == fail.status_code == 409
    assert "already completed" in again.json()["detail"]
    assert done["result"]["status"] == "completed"  # the first answer won


async def test_callback_failure_body_is_validated(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        callback_id = await app.place_for_approval(order("o-8", 5000))
        bad = await app.client.post(f"/callbacks/{callback_id}/fail", json={"message": "no"})
        still = await app.order("o-8")
    assert bad.status_code == 422
    assert still["pending_callback"]["callback_id"] == callback_id


async def test_history_is_the_aws_shape(tmp_path: Path) -> None:
    async with running_app(tmp_path) as app:
        callback_id = await app.place_for_approval(order("o-9", 3000))
        await app.client.post(f"/callbacks/{callback_id}/succeed", json={"approved": True})
        await settle(app.engine)
        response = await app.client.get("/orders/o-9/history")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["Events"]
    events = body["Events"]
    assert [e["EventId"] for e in events] == list(range(1, len(events) + 1))
    for event in events:
        assert event["EventType"] in set(EventType)
        assert f"{event['EventType']}Details" in event
        assert event["EventTimestamp"].endswith("Z")
    types = [e["EventType"] for e in events]
    assert types[0] == EventType.EXECUTION_STARTED
    assert types[-1] == EventType.EXECUTION_SUCCEEDED
    assert EventType.CALLBACK_SUCCEEDED in types
    approval = [e for e in events if e["EventType"] == EventType.CONTEXT_STARTED]
    assert [(e["SubType"], e["Name"]) for e in approval] == [
        ("WaitForCallback", "manager-approval")
    ]


# -- the documented command, for real ----------------------------------------------------------


def documented_command() -> list[str]:
    """The ``DURABLE_DB=... uvicorn ...`` line of the example's docstring, split."""
    assert fastapi_app.__doc__ is not None
    lines = [
        line.strip()
        for line in fastapi_app.__doc__.splitlines()
        if line.strip().startswith("DURABLE_DB=")
    ]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def uvicorn_server(tmp_path: Path, *, workers: int = 1) -> Iterator[tuple[httpx.Client, Path]]:
    """Run the docstring's command from the repository root (on a free port, the database in
    ``tmp_path``); yields a client once it answers. SIGTERM on leaving: it must shut down
    cleanly."""
    env_assignment, program, *args = documented_command()
    assert env_assignment == "DURABLE_DB=orders.db"
    assert program == "uvicorn"
    assert args[0] == "examples.fastapi_app:app"
    assert args[args.index("--host") + 1] == "127.0.0.1"
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    if workers > 1:
        args += ["--workers", str(workers)]
    db = tmp_path / "orders.db"
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", *args],
            cwd=ROOT,
            env={**os.environ, "DURABLE_DB": str(db)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            deadline = time.monotonic() + 20
            while True:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                try:
                    if client.get("/orders/ready-check").status_code == 404:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            yield client, db
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=20)
        text = log.read_text()
        # uvicorn shuts down gracefully, then re-raises the signal it caught (since 0.29), so
        # a clean exit is 0 or "terminated by SIGTERM" after every lifespan has finished
        assert code in (0, -signal.SIGTERM), text
        assert text.count("Application shutdown complete") == workers, text
        assert "Traceback" not in text
        assert "ERROR" not in text
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def poll_order(
    client: httpx.Client, order_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """GET the order until ``done(body)`` holds (at most 20 s)."""
    deadline = time.monotonic() + 20
    while True:
        body: dict[str, Any] = client.get(f"/orders/{order_id}").json()
        if done(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


@pytest.mark.slow
def test_documented_uvicorn_command(tmp_path: Path) -> None:
    with uvicorn_server(tmp_path) as (client, db):
        response = client.post("/orders", json=order("o-1", 25))
        assert response.status_code == 202, response.text
        assert response.json()["execution_id"] == "o-1"
        done = poll_order(client, "o-1", lambda body: body["status"] != "RUNNING")
        assert done["status"] == "SUCCEEDED", done
        assert done["result"]["trackingNumber"] == "1Z-o-1"
        assert db.exists()  # DURABLE_DB was used


@pytest.mark.slow
def test_approval_across_uvicorn_workers(tmp_path: Path) -> None:
    # --workers 2 on one SQLite file: requests land on either process, the answer to the
    # callback resumes the order wherever it runs
    with uvicorn_server(tmp_path, workers=2) as (client, _):
        assert client.post("/orders", json=order("o-2", 4800)).status_code == 202
        waiting = poll_order(client, "o-2", lambda body: body["pending_callback"] is not None)
        callback_id = waiting["pending_callback"]["callback_id"]
        answer = client.post(f"/callbacks/{callback_id}/succeed", json={"approved": True})
        assert answer.status_code == 204
        done = poll_order(client, "o-2", lambda body: body["status"] != "RUNNING")
        assert done["result"]["status"] == "completed", done
        again = client.post(f"/callbacks/{callback_id}/succeed", json={"approved": True})
        assert again.status_code == 409
