"""``GET /audits``: one page of audit records, filtered by period, flag and model.

Mounted on the Auditor service's Starlette app (``service.auditor.records_app``) and forwarded by
the LLM service. Query parameters: ``since`` / ``until`` (ISO-8601, naive = UTC, or unix seconds;
``since <= created_at < until``), ``flagged`` (true/false), ``model`` (a ``model_id``), ``limit``
(1..1000, default 50) and ``cursor`` (the previous page's ``next_cursor``). Every bad value (``nan``,
``inf``, an unreadable date, ``limit=0``, ``limit=1e3``, a repeated parameter, an empty period) is a
400 naming the field, parsed by :mod:`service.query` like ``GET /report``'s. This module knows
nothing of BentoML, so tests/service/test_query_params.py exercises it behind Starlette's test client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.common import check_bearer, json_error
from service.query import (QueryError, count_params, one_value, parse_bool_param, parse_int_param, parse_model_param,
                           parse_period, reject_unknown)

PARAMETERS = ("since", "until", "flagged", "model", "limit", "cursor")
DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_CURSOR_CHARS = 64


@dataclass(frozen=True)
class AuditsQuery:
    """A validated ``GET /audits`` request."""

    since: datetime | None
    until: datetime | None
    flagged: bool | None
    model: str | None
    limit: int
    cursor: str | None


def parse_audits_query(params: Mapping[str, str], counts: Mapping[str, int] | None = None) -> AuditsQuery:
    """The request from query parameters; :class:`QueryError` naming the field otherwise."""
    counts = counts or {}
    reject_unknown(params, PARAMETERS)
    since, until, _ = parse_period(params, counts, ("since",), ("until",))
    flagged = parse_bool_param(params, counts, "flagged")
    model = parse_model_param(params, counts)
    limit = parse_int_param(params, counts, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    cursor = None
    if (got := one_value(params, counts, "cursor")) is not None and got[1] != "":
        cursor = got[1]
        if len(cursor) > MAX_CURSOR_CHARS:
            raise QueryError("cursor", "not a cursor from a previous page (too long)")
    return AuditsQuery(since=since, until=until, flagged=flagged, model=model, limit=limit, cursor=cursor)


async def audits_response(request: Request, store: Any, token: str | None) -> Response:
    """The ``GET /audits`` response for ``request`` over ``store`` (bearer ``token`` if not None)."""
    if (denied := check_bearer(request, token)) is not None:
        return denied
    q = request.query_params
    try:
        query = parse_audits_query(q, count_params(q.multi_items()))
    except QueryError as e:
        return json_error(400, e.field, e.message)
    try:
        records, cursor = await anyio.to_thread.run_sync(
            lambda: store.query(since=query.since, until=query.until, flagged=query.flagged, model=query.model,
                                limit=query.limit, cursor=query.cursor)
        )
    except ValueError as e:  # the only value the store still checks itself is the cursor
        return json_error(400, "cursor", str(e))
    return JSONResponse({"audits": [r.model_dump(mode="json") for r in records], "next_cursor": cursor})
