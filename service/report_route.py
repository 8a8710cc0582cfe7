"""``GET /report``: the compliance report of a period (``auditor.reports.build``) served over HTTP.

Mounted on the Auditor service's Starlette app (``service.auditor.records_app``) and forwarded by
the LLM service, so it answers on the product's single port. Query parameters:

- ``from`` (or ``since``) and ``to`` (or ``until``): ISO-8601 (``2025-03-01``,
  ``2025-03-01T12:00:00Z``, with an offset; naive times are UTC) or unix seconds; either may be
  left out for an open end; the period is ``from <= created_at < to``.
- ``model``: only the audits of this ``model_id``.
- ``format``: ``html`` (default) or ``json`` (``ReportModel.model_dump_json()``).

Bad values are a 400 naming the field (the name the caller used, e.g. ``from``); an empty period
(``from >= to``) is a 400 too. The bearer token applies as on ``/audits``. The store is read in a
worker thread (``anyio.to_thread.run_sync``) and at most one report is built at a time per
process, so a report never blocks the event loop and several report requests cannot crowd out the
audit worker's CPU. This module parses and renders; it knows nothing of BentoML, so it is tested
without a server (tests/service/test_report_route.py) as well as end to end.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from service.common import check_bearer, json_error
from service.query import QueryError, count_params, one_value, parse_model_param, parse_period, reject_unknown

__all__ = ["PARAMETERS", "QueryError", "ReportQuery", "parse_report_query", "report_response"]

logger = logging.getLogger("interaction_auditor.report")

PARAMETERS = ("from", "since", "to", "until", "model", "format")
FORMATS = ("html", "json")
# the page has no scripts and no external assets (auditor.reports.build): forbid everything else outright
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

_limiter: anyio.CapacityLimiter | None = None


@dataclass(frozen=True)
class ReportQuery:
    """A validated report request; ``since_field`` is how the caller named the lower bound (errors
    about the period name it)."""

    since: datetime | None
    until: datetime | None
    model: str | None
    format: Literal["html", "json"]
    since_field: str = "from"


def parse_report_query(params: Mapping[str, str], counts: Mapping[str, int] | None = None) -> ReportQuery:
    """The report request from query parameters; :class:`QueryError` naming the field otherwise.

    ``counts`` maps a parameter name to how often it occurs (repeats are rejected, not silently
    reduced to one of them). The parsers are shared with ``GET /audits`` (:mod:`service.query`)."""
    counts = counts or {}
    reject_unknown(params, PARAMETERS)
    since, until, since_field = parse_period(params, counts, ("from", "since"), ("to", "until"))
    model = parse_model_param(params, counts)
    fmt = "html"
    if (got := one_value(params, counts, "format")) is not None and got[1] != "":
        fmt = got[1].strip().lower()
        if fmt not in FORMATS:
            raise QueryError("format", f"expected html or json, got {got[1]!r}")
    return ReportQuery(since=since, until=until, model=model, format=fmt,  # type: ignore[arg-type]
                       since_field=since_field)


def _get_limiter() -> anyio.CapacityLimiter:
    global _limiter
    if _limiter is None:  # created inside the event loop, on first use
        _limiter = anyio.CapacityLimiter(1)
    return _limiter


def _build(store: Any, query: ReportQuery) -> str:
    """Read the store and render (runs in a worker thread)."""
    from auditor import build_report, render_html, render_json

    report = build_report(store, query.since, query.until, query.model)
    return render_html(report) if query.format == "html" else render_json(report)


async def report_response(request: Request, store: Any, token: str | None) -> Response:
    """The ``GET /report`` response for ``request`` over ``store`` (bearer ``token`` if not None)."""
    if (denied := check_bearer(request, token)) is not None:
        return denied
    q = request.query_params
    try:
        query = parse_report_query(q, count_params(q.multi_items()))
    except QueryError as e:
        return json_error(400, e.field, e.message)
    try:
        text = await anyio.to_thread.run_sync(_build, store, query, limiter=_get_limiter())
    except ValueError as e:  # build_report's own period check; parse_report_query catches it first
        return json_error(400, query.since_field, str(e))
    except sqlite3.DatabaseError as e:
        logger.exception("report: the audit store could not be read")
        return json_error(503, None, f"the audit store could not be read: {type(e).__name__}")
    except Exception as e:  # noqa: BLE001 - a report failure is an error response, never a crash
        logger.exception("report failed")
        return json_error(500, None, f"the report could not be built: {type(e).__name__}")
    if query.format == "json":
        return Response(text, media_type="application/json", headers=JSON_HEADERS)
    return HTMLResponse(text, headers=HTML_HEADERS)  # text/html; charset=utf-8
