"""The callbacks of a runner's executions, read from their histories and the store, for
finding one by name and for error messages that say what exists."""

from __future__ import annotations

from typing import NamedTuple

from durable.engine import Engine
from durable.events import EventType
from durable.stores.base import CallbackStatus

__all__ = ["CallbackSeen", "all_callbacks", "callback_names", "callbacks_of", "stuck", "unknown"]


class CallbackSeen(NamedTuple):
    """One callback an execution created."""

    execution_id: str
    name: str
    callback_id: str
    status: str


async def callbacks_of(
    engine: Engine, execution_id: str, status: str | None = CallbackStatus.PENDING
) -> list[CallbackSeen]:
    """The callbacks ``execution_id`` created, oldest first (with ``status`` only, unless
    ``None``)."""
    found = []
    for event in await engine.history(execution_id):
        if event.event_type != EventType.CALLBACK_STARTED:
            continue
        callback_id = event.details["callback_id"]
        row = await engine.store.get_callback(callback_id)
        state = row.status if row is not None else "UNKNOWN"
        if status is None or state == status:
            found.append(CallbackSeen(execution_id, str(event.name), callback_id, state))
    return found


async def all_callbacks(engine: Engine, status: str | None = None) -> list[CallbackSeen]:
    """The callbacks of every execution, oldest execution first."""
    found = []
    for execution in reversed(await engine.list(limit=1_000_000)):
        found += await callbacks_of(engine, execution.execution_id, status)
    return found


async def callback_names(engine: Engine, execution_id: str) -> str:
    """``its callbacks: 'approval' (PENDING), ...``."""
    mine = await callbacks_of(engine, execution_id, None)
    listed = ", ".join(f"{c.name!r} ({c.status})" for c in mine) or "none"
    return f"its callbacks: {listed}"


async def stuck(engine: Engine, execution_id: str, goal: str) -> str:
    """Why an execution cannot ``goal`` on its own: the callbacks it (or another) waits for."""
    pending = await all_callbacks(engine, CallbackStatus.PENDING)
    waits = "; ".join(
        f"callback {c.name!r} (id {c.callback_id}) of execution {c.execution_id!r}" for c in pending
    )
    message = f"execution {execution_id!r} cannot {goal} without the test: nothing will wake it up"
    if waits:
        message += (
            f". Pending: {waits}. Answer a callback with runner.send_callback_success("
            "callback_id, ...), its id from await runner.wait_for_callback(handle, name)"
        )
    return message


async def unknown(engine: Engine, callback_id: str) -> str:
    """What to say about a callback id that does not exist (yet)."""
    known = await all_callbacks(engine)
    listed = (
        ", ".join(f"{c.name!r} = {c.callback_id} ({c.status}) in {c.execution_id!r}" for c in known)
        or "none"
    )
    hint = ""
    if any(c.name == callback_id for c in known):
        hint = f" ({callback_id!r} is a callback's name; pass its id)"
    return (
        f"no callback with id {callback_id!r} exists in this run (yet){hint}. Callbacks "
        f"created so far: {listed}. A callback exists once the workflow has created it: "
        "get its id with await runner.wait_for_callback(handle, name)"
    )
