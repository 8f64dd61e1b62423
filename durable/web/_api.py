"""The JSON API under ``/api/``: errors are ``{"error": {"type", "message"}}``."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from durable.cli._common import preview
from durable.cli._inspect import _execution_json
from durable.engine import Engine
from durable.errors import (
    CallbackAlreadyCompletedError,
    CallbackNotFoundError,
    DurableError,
    ExecutionNotFoundError,
    ExecutionNotRunningError,
    SerializationError,
)
from durable.events import history_to_json
from durable.types import Execution, ExecutionStatus

__all__ = [
    "BadRequest",
    "Filters",
    "engine_of",
    "fail_callback",
    "filters",
    "get_execution",
    "get_history",
    "list_executions",
    "stop_execution",
    "succeed_callback",
]

MAX_LIMIT = 1000
_STATUSES = ", ".join(s.value for s in ExecutionStatus)


class BadRequest(DurableError):
    """A malformed query parameter or body."""


Filters = tuple[ExecutionStatus | None, str | None, int]


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.durable_engine
    return engine


def filters(request: Request, default_limit: int = 100) -> Filters:
    """``?status=``, ``?workflow=`` and ``?limit=`` (blank means no filter)."""
    params = request.query_params
    status = None
    if raw := params.get("status", "").strip():
        try:
            status = ExecutionStatus(raw.upper())
        except ValueError:
            raise BadRequest(f"unknown status {raw!r}: use one of {_STATUSES}") from None
    workflow = params.get("workflow", "").strip() or None
    limit = default_limit
    if raw := params.get("limit", "").strip():
        try:
            limit = int(raw)
        except ValueError:
            raise BadRequest(f"limit must be a whole number, got {raw!r}") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return status, workflow, limit


def _jsonable(value: Any) -> Any:
    """``value`` if JSON can hold it, else its one-line preview."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return preview(value, 10_000)
    return value


def _json(body: Any, status_code: int = 200) -> Response:
    text = json.dumps(body, ensure_ascii=False, default=lambda v: preview(v, 10_000))
    return Response(text, status_code=status_code, media_type="application/json")


def status_of(exc: DurableError) -> int:
    """The HTTP status an engine error maps to."""
    if isinstance(exc, ExecutionNotFoundError | CallbackNotFoundError):
        return 404
    if isinstance(exc, ExecutionNotRunningError | CallbackAlreadyCompletedError):
        return 409
    if isinstance(exc, BadRequest | SerializationError):
        return 400
    return 500


def _error(exc: DurableError) -> Response:
    body = {"error": {"type": exc.error_type, "message": exc.message}}
    return _json(body, status_of(exc))


def execution_json(ex: Execution[Any]) -> dict[str, Any]:
    """An execution as the API gives it: ``durable list --json`` plus input and result."""
    body = _execution_json(ex)
    body["input"] = _jsonable(ex.input)
    body["result"] = _jsonable(ex.result)
    return body


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


async def list_executions(request: Request) -> Response:
    try:
        status, workflow, limit = filters(request)
        found = await engine_of(request).list(status=status, workflow=workflow, limit=limit)
    except DurableError as exc:
        return _error(exc)
    return _json([execution_json(ex) for ex in found])


async def get_execution(request: Request) -> Response:
    try:
        ex = await engine_of(request).get(request.path_params["execution_id"])
    except DurableError as exc:
        return _error(exc)
    return _json(execution_json(ex))


async def get_history(request: Request) -> Response:
    try:
        events = await engine_of(request).history(request.path_params["execution_id"])
    except DurableError as exc:
        return _error(exc)
    return _json(history_to_json(events))


async def stop_execution(request: Request) -> Response:
    """Body (optional): ``{"reason": "..."}``."""
    try:
        body = await _body(request)
        reason = body.get("reason") if isinstance(body, dict) else None
        if reason is not None and not isinstance(reason, str):
            raise BadRequest("reason must be a string")
        stopped = await engine_of(request).stop(request.path_params["execution_id"], reason=reason)
    except DurableError as exc:
        return _error(exc)
    return _json({"stopped": stopped})


async def succeed_callback(request: Request) -> Response:
    """Body: the callback's result as JSON (empty for ``null``)."""
    callback_id = request.path_params["callback_id"]
    try:
        result = await _body(request)
        await engine_of(request).send_callback_success(callback_id, result)
    except DurableError as exc:
        return _error(exc)
    return _json({"callback_id": callback_id, "status": "SUCCEEDED"})


async def fail_callback(request: Request) -> Response:
    """Body (optional): ``{"error_type": "...", "message": "..."}``."""
    callback_id = request.path_params["callback_id"]
    try:
        body = await _body(request)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise BadRequest('body must be an object: {"error_type": ..., "message": ...}')
        error_type = body.get("error_type") or "CallbackFailed"
        message = body.get("message") or ""
        if not isinstance(error_type, str) or not isinstance(message, str):
            raise BadRequest("error_type and message must be strings")
        await engine_of(request).send_callback_failure(
            callback_id, error_type=error_type, message=message
        )
    except DurableError as exc:
        return _error(exc)
    return _json({"callback_id": callback_id, "status": "FAILED"})
