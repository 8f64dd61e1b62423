"""``durable worker MODULE:ENGINE``: run an application's engine as a standalone worker.

Like ``uvicorn module:app``: the module is imported from the current directory, the engine
object is taken from it, and its worker loop runs until SIGINT or SIGTERM. Then it stops
claiming, lets running step attempts finish and checkpoint for the grace period, releases
what is left so another worker resumes it at once, and exits 0.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from typing import Any

import anyio
import click
import structlog

from durable.cli._common import run
from durable.engine import Engine

__all__ = ["configure_logging", "load_engine", "register"]


def load_engine(spec: str) -> Engine:
    """Import ``MODULE:ATTRIBUTE`` (dotted attributes allowed) and check it is an Engine.

    Raises:
        click.ClickException: with one line saying what was wrong.
    """
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise click.ClickException(f"expected MODULE:ENGINE (like myapp.jobs:engine), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise click.ClickException(
            f"cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise click.ClickException(
                f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not isinstance(target, Engine):
        raise click.ClickException(f"{spec} is a {type(target).__name__}, not a durable.Engine")
    if not target.is_worker:
        raise click.ClickException(f"{spec} is a client-only engine (Engine(..., worker=False))")
    return target


def configure_logging(fmt: str) -> None:
    """structlog for a worker process: JSON lines when not on a terminal, readable when on one.

    Only the CLI does this: the library never configures structlog.
    """
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


async def _serve(engine: Engine) -> None:
    log = structlog.get_logger("durable.worker")
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with engine:
            log.info(
                "worker started",
                pid=os.getpid(),
                db=engine.url,
                workflows=sorted(engine.workflows),
                concurrency=engine.worker.concurrency,
            )
            async for signum in signals:
                log.info(
                    "shutting down",
                    signal=signal.Signals(signum).name,
                    running=len(engine.worker.active),
                    grace_seconds=engine.shutdown_grace,
                )
                break
    log.info("worker stopped")


def register(cli: click.Group) -> None:
    """Add the ``worker`` command to ``cli``."""

    @cli.command()
    @click.argument("app", metavar="MODULE:ENGINE")
    @click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        default=None,
        help="Invocations run at once (default: the engine's).",
    )
    @click.option(
        "--grace",
        type=click.FloatRange(min=0),
        default=None,
        help="Seconds running steps may take to finish on shutdown.",
    )
    @click.option(
        "--log-format",
        type=click.Choice(["auto", "json", "console"]),
        default="auto",
        show_default=True,
        help="auto: JSON lines unless stderr is a terminal.",
    )
    def worker(app: str, concurrency: int | None, grace: float | None, log_format: str) -> None:
        """Run the worker loop of MODULE:ENGINE until SIGINT or SIGTERM."""
        engine = load_engine(app)
        if concurrency is not None:
            engine.worker.concurrency = concurrency
        if grace is not None:
            engine.shutdown_grace = grace
        configure_logging(log_format)
        run(_serve, engine)
