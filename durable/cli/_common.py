"""Shared pieces of the command line: ``--db``, running coroutines, parsing and formatting."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import anyio
import click

from durable.errors import DurableError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table

__all__ = [
    "DEFAULT_DB",
    "Col",
    "Output",
    "console",
    "db_option",
    "existing_db",
    "format_duration",
    "format_time",
    "parse_duration",
    "parse_json",
    "preview",
    "run",
]

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


_MEMORY_URLS = (":memory:", "memory://", "sqlite://", "sqlite:///:memory:")


def existing_db(db: str) -> str:
    """``db`` if it names an existing database: commands that only read or change existing
    executions never create an empty one."""
    if db in _MEMORY_URLS:
        return db
    path = db[len("sqlite:///") :].partition("?")[0] if db.startswith("sqlite:///") else db
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path):
        return db  # another scheme: the store names what is wrong with it
    if not Path(path).exists():
        raise click.ClickException(f"no database at {db!r} (set --db or DURABLE_DB)")
    return db


def parse_json(text: str) -> Any:
    """A JSON argument, or a one-line error naming what is wrong with it."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"payload is not valid JSON: {exc}") from None


# -- durations -------------------------------------------------------------------------

_UNITS = {"w": 7 * 86_400, "d": 86_400, "h": 3_600, "m": 60, "s": 1}
_DURATION = re.compile(
    r"^" + "".join(rf"(?:(?P<{u}>\d+(?:\.\d+)?){u})?" for u in _UNITS) + r"$", re.IGNORECASE
)
DURATION_FORMS = "a number and a unit (s, m, h, d, w), like 30s, 15m, 12h, 7d or 1d12h"


def parse_duration(text: str) -> float:
    """Seconds in ``30s``, ``15m``, ``12h``, ``7d``, ``2w`` or a combination (``1d12h``,
    largest unit first); a one-line error naming the accepted forms otherwise."""
    match = _DURATION.match(text.strip().replace(" ", ""))
    if match is None or not any(match.groupdict().values()):
        raise click.ClickException(f"invalid duration {text!r}: use {DURATION_FORMS}")
    return sum(float(v) * _UNITS[u.lower()] for u, v in match.groupdict().items() if v)


def format_duration(seconds: float) -> str:
    """``250ms``, ``2.5s``, ``1h 1m 6s``, ``7d 2h``: short and exact enough to read."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1:
        ms = seconds * 1000
        return "0s" if ms == 0 else ("<1ms" if ms < 1 else f"{ms:.0f}ms")
    if seconds < 60:
        return f"{seconds:.0f}s" if abs(seconds - round(seconds)) < 0.05 else f"{seconds:.1f}s"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    return " ".join(parts)


def format_time(moment: datetime | float, *, ms: bool = False) -> str:
    """A UTC time, ``2026-11-26 10:00:00`` (with ``.123`` when ``ms``)."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, tz=UTC)
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    return text + f".{moment.microsecond // 1000:03d}" if ms else text


# -- output ----------------------------------------------------------------------------


def preview(value: Any, limit: int = 80) -> str:
    """A value as one line of JSON (``repr`` when JSON cannot hold it), cut at ``limit``."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=_unjsonable)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unjsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.hex()
    return repr(value)


def console() -> Console:
    """A rich console for stdout: styled on a terminal; when piped, plain text with no
    colour codes and no width limit, so a row of a table stays one line."""
    from rich.console import Console

    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(highlight=False, width=100_000, no_color=True)
    return out


@dataclass(frozen=True)
class Col:
    """A table column: its header, whether it may be cut (``flex``: cut with an ellipsis
    when the terminal is narrow) and its rank among the columns dropped first when even
    that is not enough (``drop``: 1 goes first; 0 never)."""

    header: str
    flex: bool = False
    drop: int = 0
    justify: Literal["left", "right"] = "left"
    style: str = ""


class Output:
    """Tables and text on stdout. A table row is always one line: on a narrow terminal the
    ``flex`` columns are cut and then the droppable ones left out; piped, nothing is cut and
    lines carry no trailing blanks."""

    def __init__(self) -> None:
        self.console = console()
        self._items: list[RenderableType] = []

    def table(self, cols: list[Col], rows: list[list[RenderableType]], **kw: Any) -> None:
        """Add a table (``kw`` goes to :class:`rich.table.Table`)."""
        from rich.measure import Measurement

        keep = list(range(len(cols)))
        if self.console.is_terminal:
            # leave columns out until the rest fits with each flex column at least FLEX wide
            unlimited = self.console.options.update_width(100_000)
            droppable = sorted(
                (i for i, c in enumerate(cols) if c.drop), key=lambda i: cols[i].drop
            )
            for index in droppable:
                probe = self._build(cols, rows, keep, flex_max=self.FLEX, **kw)
                if Measurement.get(self.console, unlimited, probe).maximum <= self.console.width:
                    break
                keep.remove(index)
        self._items.append(self._build(cols, rows, keep, **kw))

    FLEX = 24
    """Width a flex column keeps before droppable columns are left out."""

    @staticmethod
    def _build(
        cols: list[Col],
        rows: list[list[RenderableType]],
        keep: list[int],
        flex_max: int | None = None,
        **kw: Any,
    ) -> Table:
        from rich.table import Table
        from rich.text import Text

        kw.setdefault("box", None)
        kw.setdefault("header_style", "bold")
        kw.setdefault("pad_edge", False)
        table = Table(**kw)
        for i in keep:
            col = cols[i]
            table.add_column(
                col.header,
                no_wrap=not col.flex,
                justify=col.justify,
                style=col.style,
                max_width=flex_max if col.flex else None,
            )
        for cells in rows:
            picked = []
            for i in keep:
                cell = cells[i]
                if isinstance(cell, str):
                    cell = Text(cell)
                if isinstance(cell, Text) and cols[i].flex:
                    cell.no_wrap, cell.overflow = True, "ellipsis"
                picked.append(cell)
            table.add_row(*picked)
        return table

    def print(self, *items: RenderableType) -> None:
        """Add lines (a renderable each; ``""`` for a blank line)."""
        self._items.extend(items)

    def flush(self) -> None:
        """Write everything added so far."""
        items, self._items = self._items, []
        if self.console.is_terminal:
            for item in items:
                self.console.print(item)
            return
        with self.console.capture() as captured:
            for item in items:
                self.console.print(item)
        click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))
