"""Shared pieces of the command line: the ``--db`` option, running coroutines, JSON input."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import anyio
import click

from durable.errors import DurableError

__all__ = ["DEFAULT_DB", "db_option", "existing_db", "parse_json", "run"]

T = TypeVar("T")
DEFAULT_DB = "durable.db"

db_option = click.option(
    "--db",
    envvar="DURABLE_DB",
    default=DEFAULT_DB,
    show_default=True,
    help="Database path or URL (env DURABLE_DB).",
)
"""``--db``, accepted after any subcommand (or ``DURABLE_DB``)."""


def run(fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """Run a coroutine; durable errors become one line on stderr and exit code 1."""
    try:
        return anyio.run(fn, *args)
    except DurableError as exc:
        raise click.ClickException(f"{exc.error_type}: {exc.message}") from None


def existing_db(db: str) -> str:
    """Read-only commands never create an empty database."""
    if db not in (":memory:",) and not db.startswith("sqlite:") and not Path(db).exists():
        raise click.ClickException(f"no database at {db!r} (set --db or DURABLE_DB)")
    return db


def parse_json(text: str) -> Any:
    """A JSON argument, or a one-line error naming what is wrong with it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"payload is not valid JSON: {exc}") from None
