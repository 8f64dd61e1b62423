"""Stand-ins for invoked workflows: ``runner.register_fake(name, fn_or_result)``."""

from __future__ import annotations

import inspect
from typing import Any

from durable.context import DurableContext
from durable.workflow import Workflow

__all__ = ["fake_workflow"]


def fake_workflow(name: str, fn_or_result: Any) -> Workflow[Any]:
    """A workflow named ``name`` that runs ``fn_or_result`` (an ``async def (ctx, input)``
    or ``(ctx)``), raises it (an exception instance) or returns it (any other value).

    Raises:
        TypeError: ``name`` is not a string, or ``fn_or_result`` is a plain (not async)
            function, which would be returned as a value by mistake.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"a fake workflow needs a name, got {name!r}")
    if inspect.iscoroutinefunction(fn_or_result):
        return Workflow(fn_or_result, name=name)
    if callable(fn_or_result) and not isinstance(fn_or_result, type):
        raise TypeError(
            f"register_fake({name!r}, ...) takes an 'async def (ctx, input)' or a constant "
            f"result, got the plain function {fn_or_result!r}"
        )
    value = fn_or_result

    async def fake(ctx: DurableContext, input: Any) -> Any:
        if isinstance(value, BaseException):
            raise value
        return value

    fake.__name__ = fake.__qualname__ = f"fake_{name}"
    return Workflow(fake, name=name)
