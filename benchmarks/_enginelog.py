"""Keep the engine's log lines out of a benchmark's table, and count them.

``durable`` logs through structlog and leaves its configuration to the application. A
benchmark that drives thousands of executions can make the engine log thousands of lines
(a warning per execution, say); printed on stdout they bury the figures. :func:`capture`
configures structlog to print the first few lines of each kind on stderr and to count all
of them; :func:`print_counts` prints the counts under the figures, because a warning that
fires under load is a finding too.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from typing import Any

import structlog

__all__ = ["capture", "counts", "print_counts"]

SHOWN_PER_KIND = 3

_counts: Counter[tuple[str, str]] = Counter()


def _count(_logger: Any, method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    key = (method, str(event_dict.get("event")))
    _counts[key] += 1
    if _counts[key] > SHOWN_PER_KIND:
        raise structlog.DropEvent
    return event_dict


def capture(level: int = logging.INFO) -> None:
    """Route structlog (the engine's log) to stderr, at most a few lines per kind, counted."""
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _count,
            structlog.processors.TimeStamper(fmt="%H:%M:%S.%f"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def counts() -> dict[str, int]:
    """``{"level: event": count}`` of every line logged since :func:`capture`."""
    return {f"{method}: {event}": n for (method, event), n in _counts.most_common()}


def print_counts(found: dict[str, int] | None = None) -> None:
    """The engine log's lines by kind (``found``: counts gathered elsewhere)."""
    found = counts() if found is None else found
    if not found:
        print("engine log   no lines at info level or above")
        return
    print("engine log   lines at info level or above, by kind (the first few are on stderr):")
    for kind, n in found.items():
        print(f"  {n:>9,}  {kind}")
