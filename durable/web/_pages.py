"""The HTML pages: the executions list and one execution's timeline. Server-rendered, no
JavaScript; every value that comes from a workflow or a request goes through ``escape``."""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse

from durable.cli._common import format_duration, format_time, preview
from durable.cli._inspect import _error_line, _Explain, _operations, _walk, gather_shown
from durable.errors import DurableError
from durable.types import Execution, ExecutionStatus
from durable.web._api import engine_of, filters, status_of

__all__ = ["execution_page", "executions_page"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
a{color:#0550ae;text-decoration:none}a:hover{text-decoration:underline}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}
th{background:#f4f4f4}td.num{text-align:right;white-space:nowrap}
pre{margin:0;white-space:pre-wrap;word-break:break-all;font-size:.85rem}
.st{font-weight:600}.SUCCEEDED{color:#1a7f37}.FAILED,.TIMED_OUT{color:#cf222e}
.RUNNING,.PENDING,.RETRYING,.POLLING,.STARTED{color:#9a6700}
.STOPPED,.CANCELLED,.INTERRUPTED,.UNFINISHED{color:#8250df}
.err{color:#cf222e}.dim{color:#777}
.track{position:relative;height:.9rem;min-width:12rem;background:#f4f4f4}
.bar{position:absolute;top:0;height:100%;min-width:2px;background:#54aeff}
.bar.SUCCEEDED{background:#4ac26b}.bar.FAILED,.bar.TIMED_OUT{background:#ff8182}
dl{display:grid;grid-template-columns:max-content auto;gap:.3rem 1rem}dt{font-weight:600}
dd{margin:0}form{margin:1rem 0}
"""


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status_code)


def _base(request: Request) -> str:
    """The path the app is mounted at (``""`` when served on its own)."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def _link(request: Request, execution_id: str, text: str | None = None) -> str:
    href = f"{_base(request)}/executions/{quote(execution_id, safe='')}"
    return f"<a href='{escape(href)}'>{escape(text or execution_id)}</a>"


def _status(status: str) -> str:
    return f"<span class='st {escape(status)}'>{escape(status)}</span>"


def _home(request: Request) -> str:
    return f"<p><a href='{escape(_base(request))}/'>← all executions</a></p>"


def _error_page(request: Request, exc: DurableError) -> HTMLResponse:
    body = f"{_home(request)}<h1>{escape(exc.error_type)}</h1><p class='err'>"
    body += f"{escape(exc.message)}</p>"
    return _page(exc.error_type, body, status_of(exc))


def _took(ex: Execution[Any], now: float) -> str:
    started = ex.created_at.timestamp()
    if ex.ended_at is not None:
        return format_duration(ex.ended_at.timestamp() - started)
    return f"{format_duration(now - started)} so far" if now >= started else "-"


# -- the list --------------------------------------------------------------------------


async def executions_page(request: Request) -> HTMLResponse:
    """``/``: executions, newest first, filtered by ``?status=`` and ``?workflow=``."""
    engine = engine_of(request)
    try:
        status, workflow, limit = filters(request)
        found = await engine.list(status=status, workflow=workflow, limit=limit)
    except DurableError as exc:
        return _error_page(request, exc)
    now = engine.clock.now()
    options = "".join(
        f"<option value='{s.value}'{' selected' if s is status else ''}>{s.value}</option>"
        for s in ExecutionStatus
    )
    form = (
        "<form method='get'>status <select name='status'><option value=''>any</option>"
        f"{options}</select> workflow <input name='workflow' value='{escape(workflow or '')}'>"
        f" <input type='hidden' name='limit' value='{limit}'> <button>filter</button></form>"
    )
    rows = []
    for ex in found:
        parent = _link(request, ex.parent_id) if ex.parent_id else "-"
        rows.append(
            f"<tr><td>{_link(request, ex.execution_id)}</td><td>{escape(ex.workflow)}</td>"
            f"<td>{_status(ex.status.value)}</td><td>{format_time(ex.created_at)}</td>"
            f"<td class='num'>{_took(ex, now)}</td><td>{parent}</td>"
            f"<td class='err'>{escape(_error_line(ex.error, 120))}</td></tr>"
        )
    if rows:
        table = (
            "<table><thead><tr><th>execution id</th><th>workflow</th><th>status</th>"
            "<th>started (UTC)</th><th>took</th><th>parent</th><th>error</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    else:
        table = "<p>no executions found</p>"
    more = ""
    if len(found) == limit:
        query = {"status": status.value if status else "", "workflow": workflow or ""}
        query["limit"] = str(min(limit * 2, 1000))
        more = f"<p><a href='?{escape(urlencode(query))}'>show more</a></p>"
    return _page("durable: executions", f"<h1>Executions</h1>{form}{table}{more}")


# -- one execution ---------------------------------------------------------------------


async def execution_page(request: Request) -> HTMLResponse:
    """``/executions/{id}``: the execution and its operations as a timeline."""
    engine = engine_of(request)
    execution_id = request.path_params["execution_id"]
    try:
        shown = await gather_shown(engine, execution_id)
    except DurableError as exc:
        return _error_page(request, exc)
    ex, events, children = shown.execution, shown.events, shown.children
    now = engine.clock.now()
    explain = _Explain(ex, {c.execution_id: c for c in children}, shown.callbacks, shown.row, now)
    walked = [(op, guide, explain.view(op)) for op, guide in _walk(_operations(events))]

    head: list[tuple[str, str]] = [
        ("workflow", escape(ex.workflow)),
        ("status", _status(ex.status.value)),
        ("started", f"{format_time(ex.created_at, ms=True)} UTC"),
        ("took", escape(_took(ex, now))),
        ("parent", _link(request, ex.parent_id) if ex.parent_id else "-"),
        ("input", f"<pre>{escape(preview(ex.input, 5000))}</pre>"),
    ]
    if ex.status is ExecutionStatus.SUCCEEDED:
        head.append(("result", f"<pre>{escape(preview(ex.result, 5000))}</pre>"))
    if ex.error is not None:
        stack = "".join(escape(frame) for frame in ex.error.stack[-10:])
        error = f"<pre class='err'>{escape(_error_line(ex.error, 5000))}</pre>"
        head.append(("error", error + (f"<pre class='dim'>{stack}</pre>" if stack else "")))
    if children:
        kids = "<br>".join(
            f"{_link(request, c.execution_id)} {escape(c.workflow)} {_status(c.status.value)}"
            for c in children
        )
        head.append(("children", kids))
    waiting = [escape(v.waiting) for _, _, v in walked if v.waiting]
    if ex.status is ExecutionStatus.RUNNING and waiting:
        head.append(("waiting on", "<br>".join(waiting)))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in head)

    t0 = events[0].timestamp.timestamp() if events else ex.created_at.timestamp()
    t1 = ex.ended_at.timestamp() if ex.ended_at is not None else now
    t1 = max([t1, t0, *(op.end for op, _, _ in walked)])
    span = (t1 - t0) or 1.0
    rows = []
    for op, guide, view in walked:
        start = max(0.0, op.start - t0)
        open_ = view.took == "-"
        end = (t1 if open_ and explain.running else op.end) - t0
        left, width = 100 * start / span, 100 * max(0.0, end - start) / span
        bar = (
            f"<div class='track'><div class='bar {escape(view.status)}' "
            f"style='left:{left:.2f}%;width:{width:.2f}%'></div></div>"
        )
        attempts = ""
        if op.kind == "Step":
            attempt = op.last.details.get("attempt") or sum(
                1 for e in op.events if e.event_type == "StepStarted"
            )
            attempts = str(attempt)
        failed = view.status in ("FAILED", "TIMED_OUT")
        rows.append(
            f"<tr><td class='num'>+{format_duration(start)}</td>"
            f"<td class='num'>{escape(view.took)}</td>"
            f"<td><span class='dim'>{escape(guide)}</span>{escape(op.label)}</td>"
            f"<td>{escape(op.sub_type)}</td><td class='num'>{attempts}</td>"
            f"<td>{_status(view.status)}</td><td>{bar}</td>"
            f"<td class='{'err' if failed else ''}'>{escape(view.details)}</td></tr>"
        )
    if rows:
        timeline = (
            "<h2>Timeline</h2><p class='dim'>offsets from the start of the execution</p>"
            "<table><thead><tr><th>start</th><th>took</th><th>operation</th><th>type</th>"
            "<th>attempts</th><th>status</th><th></th><th>details</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )
    else:
        timeline = "<p>no operations recorded</p>"
    api = f"{_base(request)}/api/executions/{quote(execution_id, safe='')}"
    links = (
        f"<p class='dim'>JSON: <a href='{escape(api)}'>execution</a> · "
        f"<a href='{escape(api)}/history'>history</a></p>"
    )
    body = f"{_home(request)}<h1>{escape(ex.execution_id)}</h1><dl>{dl}</dl>{timeline}{links}"
    return _page(f"durable: {ex.execution_id}", body)
