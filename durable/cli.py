"""The ``durable`` command line (needs the ``cli`` extra: ``pip install 'durable[cli]'``)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import anyio

from durable.errors import DurableError
from durable.events import history_to_json

try:
    import click
except ImportError:  # pragma: no cover - exercised only without the extra
    click = None  # type: ignore[assignment]

__all__ = ["main"]

T = TypeVar("T")
DEFAULT_DB = "durable.db"


def _run(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run a coroutine; durable errors become one line on stderr and exit code 1."""
    try:
        return anyio.run(fn, *args)
    except DurableError as exc:
        raise click.ClickException(f"{exc.error_type}: {exc.message}") from None


def _existing(db: str) -> str:
    """Read-only commands never create an empty database."""
    if db not in (":memory:",) and not db.startswith("sqlite:") and not Path(db).exists():
        raise click.ClickException(f"no database at {db!r} (set --db or DURABLE_DB)")
    return db


def _build() -> Any:
    db_option = click.option(
        "--db",
        envvar="DURABLE_DB",
        default=DEFAULT_DB,
        show_default=True,
        help="Database path or URL (env DURABLE_DB).",
    )

    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="durable")
    def cli() -> None:
        """durable: embedded durable execution for asyncio."""

    @cli.command()
    @db_option
    def demo(db: str) -> None:
        """Run the order workflow, kill its worker mid-wait (SIGKILL), and resume it."""
        from durable.demo import run_demo

        _run(run_demo, db)

    @cli.command("list")
    @db_option
    @click.option("--status", help="RUNNING, SUCCEEDED, FAILED, STOPPED or TIMED_OUT.")
    @click.option("--workflow", help="Only executions of this workflow.")
    @click.option("--limit", default=50, show_default=True)
    def list_(db: str, status: str | None, workflow: str | None, limit: int) -> None:
        """List executions, newest first."""
        from durable.engine import Engine

        async def go() -> list[Any]:
            async with Engine(_existing(db), worker=False) as engine:
                return await engine.list(status=status, workflow=workflow, limit=limit)

        for ex in _run(go):
            ended = ex.ended_at.isoformat(timespec="seconds") if ex.ended_at else "-"
            click.echo(f"{ex.execution_id}\t{ex.workflow}\t{ex.status}\t{ended}")

    @cli.command()
    @db_option
    @click.argument("execution_id")
    @click.option(
        "--json", "as_json", is_flag=True, help="The AWS GetDurableExecutionHistory shape."
    )
    def history(db: str, execution_id: str, as_json: bool) -> None:
        """Print an execution's history."""
        from durable.engine import Engine

        async def go() -> list[Any]:
            async with Engine(_existing(db), worker=False) as engine:
                return await engine.history(execution_id)

        events = _run(go)
        if as_json:
            click.echo(json.dumps(history_to_json(events), indent=1))
            return
        for event in events:
            stamp = event.timestamp.isoformat(timespec="milliseconds")
            click.echo(f"{event.event_id:>4} {stamp} {event.event_type:<22} {event.name or ''}")

    @cli.group()
    def callback() -> None:
        """Answer a callback: succeed, fail or heartbeat."""

    def _answer(db: str, action: str, callback_id: str, **kwargs: Any) -> None:
        from durable.engine import Engine

        async def go() -> None:
            async with Engine(_existing(db), worker=False) as engine:
                await getattr(engine, f"send_callback_{action}")(callback_id, **kwargs)

        _run(go)

    @callback.command("succeed")
    @db_option
    @click.argument("callback_id")
    @click.argument("payload", required=False)
    def succeed(db: str, callback_id: str, payload: str | None) -> None:
        """Complete CALLBACK_ID with PAYLOAD (JSON; null when omitted)."""
        _answer(db, "success", callback_id, result=_json(payload) if payload else None)
        click.echo(f"callback {callback_id} succeeded")

    @callback.command("fail")
    @db_option
    @click.argument("callback_id")
    @click.argument("payload", required=False)
    @click.option("--error-type", default=None, help="Error type (default CallbackFailed).")
    @click.option("--message", default=None, help="Error message.")
    def fail(
        db: str, callback_id: str, payload: str | None, error_type: str | None, message: str | None
    ) -> None:
        """Fail CALLBACK_ID; PAYLOAD may be {"error_type": ..., "message": ...}."""
        fields = _json(payload) if payload else {}
        if not isinstance(fields, dict):
            raise click.ClickException(
                "the failure payload must be a JSON object like "
                '{"error_type": "Rejected", "message": "not approved"}'
            )
        kind = error_type or fields.get("error_type") or fields.get("ErrorType") or "CallbackFailed"
        text = message or fields.get("message") or fields.get("ErrorMessage") or ""
        _answer(db, "failure", callback_id, error_type=str(kind), message=str(text))
        click.echo(f"callback {callback_id} failed ({kind})")

    @callback.command("heartbeat")
    @db_option
    @click.argument("callback_id")
    def heartbeat(db: str, callback_id: str) -> None:
        """Tell CALLBACK_ID its outside system is still working."""
        _answer(db, "heartbeat", callback_id)
        click.echo(f"callback {callback_id} heartbeat recorded")

    return cli


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"payload is not valid JSON: {exc}") from None


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``durable`` command."""
    if click is None:  # pragma: no cover - exercised only without the extra
        sys.stderr.write("the durable CLI needs its extra: pip install 'durable[cli]'\n")
        raise SystemExit(2)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _build()(args=argv, prog_name="durable")
