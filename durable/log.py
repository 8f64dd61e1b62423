"""Logging through structlog, the one place the library touches it.

The library never calls ``structlog.configure``: the application decides where lines go.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

__all__ = ["ReplayAwareLogger", "get_logger"]


def get_logger(name: str = "durable", **bound: Any) -> Any:
    """A structlog logger named ``name`` with ``bound`` context."""
    return structlog.get_logger(name).bind(**bound)


class ReplayAwareLogger:
    """``ctx.logger``: a structlog logger that stays silent while the workflow replays.

    Each line is therefore logged once, by the invocation that first ran that part of the
    workflow, however many times it is replayed afterwards.
    """

    __slots__ = ("_is_replaying", "_logger")

    def __init__(self, logger: Any, is_replaying: Callable[[], bool]) -> None:
        self._logger = logger
        self._is_replaying = is_replaying

    def bind(self, **values: Any) -> ReplayAwareLogger:
        """A logger with more bound context, still replay-aware."""
        return ReplayAwareLogger(self._logger.bind(**values), self._is_replaying)

    def _log(self, method: str, event: str, kw: dict[str, Any]) -> None:
        if not self._is_replaying():
            getattr(self._logger, method)(event, **kw)

    def debug(self, event: str, **kw: Any) -> None:
        """Log at debug level unless replaying."""
        self._log("debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        """Log at info level unless replaying."""
        self._log("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        """Log at warning level unless replaying."""
        self._log("warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        """Log at error level unless replaying."""
        self._log("error", event, kw)

    def exception(self, event: str, **kw: Any) -> None:
        """Log at error level with the current exception unless replaying."""
        self._log("exception", event, kw)

    def critical(self, event: str, **kw: Any) -> None:
        """Log at critical level unless replaying."""
        self._log("critical", event, kw)

    warn = warning
    msg = info
