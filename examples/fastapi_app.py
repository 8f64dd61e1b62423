"""Orders over HTTP: a FastAPI app that embeds the durable engine in its lifespan.

Run it (the ``examples`` extra: ``pip install -e '.[examples]'``)::

    DURABLE_DB=orders.db uvicorn examples.fastapi_app:app --host 127.0.0.1 --port 8000

Several worker processes on the same SQLite file are fine
(``uvicorn examples.fastapi_app:app --host 127.0.0.1 --port 8000 --workers 4``): each
process runs the engine's worker loop, executions are claimed with leases, so an order never
runs in two processes at once, and a callback answered through any process resumes the
order wherever it runs (within the engine's ``poll_interval``).

The flow, from another terminal::

    # a small order runs straight through: reserve, pay, ship
    curl -i -X POST http://127.0.0.1:8000/orders -H 'content-type: application/json' \\
         -d '{"id": "o-1", "items": [{"sku": "book", "qty": 1}], "amount": 25}'
    curl http://127.0.0.1:8000/orders/o-1               # status SUCCEEDED + the result
    curl http://127.0.0.1:8000/orders/o-1/history       # {"Events": [...]}, the AWS shape

    # posting the same order again returns the same execution; another body for the same
    # id is refused with 409

    # above 1000 the order waits (up to 3 days) for a manager
    curl -i -X POST http://127.0.0.1:8000/orders -H 'content-type: application/json' \\
         -d '{"id": "o-2", "items": [{"sku": "piano", "qty": 1}], "amount": 4800}'
    curl http://127.0.0.1:8000/orders/o-2
    # -> {"status": "RUNNING", "pending_callback": {"callback_id": "CALLBACK_ID", ...}, ...}
    curl -i -X POST http://127.0.0.1:8000/callbacks/CALLBACK_ID/succeed \\
         -H 'content-type: application/json' -d '{"approved": true, "by": "ana"}'
    # or reject it:
    curl -i -X POST http://127.0.0.1:8000/callbacks/CALLBACK_ID/fail \\
         -H 'content-type: application/json' \\
         -d '{"error_type": "Rejected", "message": "over budget"}'

Callback answers return 204; an unknown callback id is 404, one already answered (or timed
out, or whose order ended) is 409. Unknown orders are 404.

How a client learns the approval's callback id: the engine commits the callback, with its
id, to the order's event log (``CallbackStarted``) before the submitter step runs, so the log
is already the durable, shared record of "this order waits for a manager". ``GET
/orders/{id}`` reads it back and returns it as ``pending_callback`` while the approval is
open (``null`` otherwise). That needs no extra table and works from any uvicorn worker, since
they all read the same database. The submitter step (``notify_manager``) is where a real app
would email or message the manager the approve/reject links; here it logs them. The
callback id is an unguessable token that grants the right to approve: in production, put
``/callbacks/...`` and ``pending_callback`` behind the managers' authentication.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import structlog
from fastapi import Body, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from durable import (
    CallbackAlreadyCompletedError,
    CallbackFailedError,
    CallbackNotFoundError,
    CallbackTimeoutError,
    Clock,
    DurableContext,
    Engine,
    EventType,
    ExecutionAlreadyExistsError,
    ExecutionNotFoundError,
    ExecutionStatus,
    HistoryEvent,
    PayloadTooLargeError,
    RetryPolicy,
    StepError,
)
from durable.events import history_to_json

APPROVAL_THRESHOLD = 1000.0
"""Orders above this amount wait for a manager's approval."""
APPROVAL_TIMEOUT = timedelta(days=3)
"""An approval nobody answers in this long cancels the order."""
CARD_LIMIT = 10_000.0
"""The fake payment provider declines charges above this."""
PAYMENT_RETRY = RetryPolicy(
    max_attempts=5,
    initial_delay=timedelta(seconds=2),
    max_delay=timedelta(seconds=30),
    retry_on=(ConnectionError, TimeoutError),  # outages are retried, a declined card is not
)

log = structlog.get_logger("orders")


# -- the outside world (fakes: a real app calls its services here) ----------------------------


class PaymentDeclinedError(Exception):
    """The card was declined: retrying will not help."""


def reserve_inventory(order_id: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"reservationId": f"res-{order_id}", "units": sum(item["qty"] for item in items)}


def release_inventory(reservation: dict[str, Any]) -> None:
    log.info("inventory released", reservation=reservation["reservationId"])


def charge_card(order_id: str, amount: float) -> dict[str, Any]:
    # Pass order_id as the provider's idempotency key, so a retried attempt never charges twice.
    if amount > CARD_LIMIT:
        raise PaymentDeclinedError(f"card declined: {amount:.2f} is over the card limit")
    return {"paymentId": f"pay-{order_id}", "amount": amount}


def create_shipment(order_id: str, reservation: dict[str, Any]) -> dict[str, Any]:
    return {"trackingNumber": f"1Z-{order_id}", "reservationId": reservation["reservationId"]}


# -- HTTP bodies ------------------------------------------------------------------------------


class Item(BaseModel):
    sku: str = Field(min_length=1)
    qty: int = Field(gt=0)


class Order(BaseModel):
    id: str = Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")
    items: list[Item] = Field(min_length=1)
    amount: float = Field(gt=0)


class CallbackFailure(BaseModel):
    error_type: str = Field(min_length=1)
    message: str


# durable errors -> HTTP statuses; each answers {"detail": <the error's message>}
HTTP_ERRORS: dict[type[Exception], int] = {
    ExecutionNotFoundError: 404,
    CallbackNotFoundError: 404,
    ExecutionAlreadyExistsError: 409,
    CallbackAlreadyCompletedError: 409,
    PayloadTooLargeError: 413,
}


def pending_callback(history: list[HistoryEvent]) -> dict[str, Any] | None:
    """The callback this execution waits on (from its log), or ``None``."""
    open_callbacks: dict[str | None, HistoryEvent] = {}
    for event in history:
        if event.event_type == EventType.CALLBACK_STARTED:
            open_callbacks[event.id] = event
        elif event.event_type in (
            EventType.CALLBACK_SUCCEEDED,
            EventType.CALLBACK_FAILED,
            EventType.CALLBACK_TIMED_OUT,
        ):
            open_callbacks.pop(event.id, None)
    if not open_callbacks:
        return None
    event = next(iter(open_callbacks.values()))
    timeout = event.details.get("timeout")
    expires = None if timeout is None else event.timestamp + timedelta(seconds=timeout)
    return {
        "callback_id": event.details["callback_id"],
        "name": event.name,
        "expires_at": None if expires is None else expires.isoformat(),
    }


async def place_order(ctx: DurableContext, order: dict[str, Any]) -> dict[str, Any]:
    """The order workflow: reserve, (approval above the threshold), pay, ship."""
    reservation = await ctx.step(reserve_inventory, order["id"], order["items"])
    approved_by = None
    if order["amount"] > APPROVAL_THRESHOLD:

        def notify_manager(callback_id: str) -> None:
            # A real app emails the manager links to POST /callbacks/{id}/succeed|fail.
            log.info(
                "approval needed",
                order=order["id"],
                amount=order["amount"],
                approve=f"POST /callbacks/{callback_id}/succeed",
                reject=f"POST /callbacks/{callback_id}/fail",
            )

        try:
            decision = await ctx.wait_for_callback(
                notify_manager, name="manager-approval", timeout=APPROVAL_TIMEOUT
            )
        except CallbackTimeoutError:
            await ctx.step(release_inventory, reservation)
            return {"status": "cancelled", "reason": "approval timed out"}
        except CallbackFailedError as exc:
            await ctx.step(release_inventory, reservation)
            return {"status": "rejected", "reason": exc.message}
        if not (isinstance(decision, dict) and decision.get("approved") is True):
            await ctx.step(release_inventory, reservation)
            reason = decision.get("reason") if isinstance(decision, dict) else None
            return {"status": "rejected", "reason": reason or "not approved"}
        approved_by = decision.get("by")
    try:
        payment = await ctx.step(
            charge_card, order["id"], order["amount"], name="process-payment", retry=PAYMENT_RETRY
        )
    except StepError:
        await ctx.step(release_inventory, reservation)
        raise  # the order fails with the payment's error type and message
    shipment = await ctx.step(create_shipment, order["id"], reservation)
    return {
        "status": "completed",
        "paymentId": payment["paymentId"],
        "trackingNumber": shipment["trackingNumber"],
        "approvedBy": approved_by,
    }


def build_engine(db: str, *, clock: Clock | None = None) -> Engine:
    """An engine on ``db`` with the ``place_order`` workflow registered."""
    engine = Engine(db, clock=clock)
    engine.workflow(place_order)
    return engine


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(get_engine)]


def create_app(db: str, *, clock: Clock | None = None) -> FastAPI:
    """The orders app on the database ``db`` (a path, ``sqlite:///...`` or ``:memory:``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Built here, in the server's event loop, and opened for the app's lifetime: the
        # database is opened (and migrated) and the worker loop runs in the background.
        async with build_engine(db, clock=clock) as engine:
            app.state.engine = engine
            yield
        # On shutdown running steps get engine.shutdown_grace to finish, then executions
        # are released, so another worker (or the next start) resumes them at once.

    app = FastAPI(title="durable orders example", lifespan=lifespan)

    async def durable_error(request: Request, exc: Exception) -> JSONResponse:
        status = next(code for kind, code in HTTP_ERRORS.items() if isinstance(exc, kind))
        return JSONResponse({"detail": str(exc)}, status_code=status)

    for error_type in HTTP_ERRORS:
        app.add_exception_handler(error_type, durable_error)

    @app.post("/orders", status_code=202)
    async def create_order(order: Order, engine: EngineDep, response: Response) -> dict[str, Any]:
        """Start the order's workflow; idempotent on the order id."""
        handle = await engine.start("place_order", order.model_dump(), execution_id=order.id)
        response.headers["Location"] = f"/orders/{order.id}"
        return {"execution_id": handle.execution_id, "status": await handle.status()}

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str, engine: EngineDep) -> dict[str, Any]:
        """The order's status, its result or error, and the callback it waits on."""
        execution = await engine.get(order_id)
        waiting = None
        if execution.status is ExecutionStatus.RUNNING:
            waiting = pending_callback(await engine.history(order_id))
        error = execution.error
        return {
            "execution_id": execution.execution_id,
            "status": execution.status,
            "result": execution.result,
            "error": None if error is None else {"type": error.type, "message": error.message},
            "pending_callback": waiting,
        }

    @app.get("/orders/{order_id}/history")
    async def get_order_history(order_id: str, engine: EngineDep) -> dict[str, Any]:
        """The order's event log in the AWS ``GetDurableExecutionHistory`` shape."""
        return history_to_json(await engine.history(order_id))

    @app.post("/callbacks/{callback_id}/succeed", status_code=204)
    async def succeed_callback(
        callback_id: str, engine: EngineDep, result: Annotated[Any, Body()] = None
    ) -> Response:
        """Answer a callback; the JSON body is its result."""
        await engine.send_callback_success(callback_id, result)
        return Response(status_code=204)

    @app.post("/callbacks/{callback_id}/fail", status_code=204)
    async def fail_callback(
        callback_id: str, failure: CallbackFailure, engine: EngineDep
    ) -> Response:
        """Fail a callback; the workflow sees ``CallbackFailedError(error_type, message)``."""
        await engine.send_callback_failure(
            callback_id, error_type=failure.error_type, message=failure.message
        )
        return Response(status_code=204)

    return app


app = create_app(os.environ.get("DURABLE_DB", "orders.db"))
