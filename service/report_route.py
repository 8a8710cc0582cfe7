"""``GET /report``: the compliance report of a period (``auditor.report``) served over HTTP.

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
without a server (tests/test_report_route.py) as well as end to end.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

import anyio
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from service.common import check_bearer, json_error

logger = logging.getLogger("interaction_auditor.report")

PARAMETERS = ("from", "since", "to", "until", "model", "format")
FORMATS = ("html", "json")
MAX_MODEL_CHARS = 256
# the page has no scripts and no external assets (auditor.report): forbid everything else outright
HTML_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
JSON_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}

_limiter: anyio.CapacityLimiter | None = None


class QueryError(ValueError):
    """A bad query value; ``field`` is the parameter name the caller used."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ReportQuery:
    """A validated report request; ``since_field`` is how the caller named the lower bound (errors
    about the period name it)."""

    since: datetime | None
    until: datetime | None
    model: str | None
    format: Literal["html", "json"]
    since_field: str = "from"


def _bound(field: str, value: str) -> datetime:
    """One end of the period from ISO-8601 text or unix seconds (finite, in datetime's range)."""
    from auditor.report import parse_time

    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds):
            raise QueryError(field, f"expected an ISO-8601 time or unix seconds, got {value!r}")
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise QueryError(field, f"unix seconds out of range: {value!r}") from None
    try:
        parsed = parse_time(text)
    except ValueError:
        raise QueryError(field, f"expected an ISO-8601 time (e.g. 2025-03-01 or 2025-03-01T12:00:00Z) or unix "
                                f"seconds, got {value!r}") from None
    if parsed is None:
        raise QueryError(field, "is empty; leave the parameter out for an open end")
    return parsed


def _one(params: Mapping[str, str], multi: Mapping[str, int], *names: str) -> tuple[str, str] | None:
    """The single value given under one of ``names`` (aliases), with the name used."""
    given = [n for n in names if n in params]
    if len(given) > 1:
        raise QueryError(given[1], f"give only one of {' or '.join(names)}")
    if not given:
        return None
    name = given[0]
    if multi.get(name, 1) > 1:
        raise QueryError(name, "given more than once")
    return name, params[name]


def parse_report_query(params: Mapping[str, str], counts: Mapping[str, int] | None = None) -> ReportQuery:
    """The report request from query parameters; :class:`QueryError` naming the field otherwise.

    ``counts`` maps a parameter name to how often it occurs (repeats are rejected, not silently
    reduced to one of them)."""
    counts = counts or {}
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise QueryError(unknown[0], f"unknown query parameter (use {', '.join(PARAMETERS)})")
    since = until = None
    since_field = "from"
    if (got := _one(params, counts, "from", "since")) is not None and got[1].strip():
        since_field = got[0]
        since = _bound(*got)
    until_field = "to"
    if (got := _one(params, counts, "to", "until")) is not None and got[1].strip():
        until_field = got[0]
        until = _bound(*got)
    if since is not None and until is not None and since >= until:
        raise QueryError(since_field, f"empty period: {since_field} {since.isoformat()} is not before "
                                      f"{until_field} {until.isoformat()}")
    model = None
    if (got := _one(params, counts, "model")) is not None and got[1] != "":
        model = got[1]
        if len(model) > MAX_MODEL_CHARS:
            raise QueryError("model", f"longer than {MAX_MODEL_CHARS} characters")
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in model):
            raise QueryError("model", "contains control characters")
    fmt = "html"
    if (got := _one(params, counts, "format")) is not None and got[1] != "":
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
    from auditor.report import build_report, render_html, render_json

    report = build_report(store, query.since, query.until, query.model)
    return render_html(report) if query.format == "html" else render_json(report)


async def report_response(request: Request, store: Any, token: str | None) -> Response:
    """The ``GET /report`` response for ``request`` over ``store`` (bearer ``token`` if not None)."""
    if (denied := check_bearer(request, token)) is not None:
        return denied
    q = request.query_params
    counts: dict[str, int] = {}
    for key, _ in q.multi_items():
        counts[key] = counts.get(key, 0) + 1
    try:
        query = parse_report_query(q, counts)
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
