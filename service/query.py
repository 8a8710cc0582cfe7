"""Query-parameter parsing shared by ``GET /audits`` and ``GET /report``.

Both routes take time bounds, a model filter and integers from the URL, where anything can arrive:
``nan``, ``inf``, ``1e400``, a date past year 9999 once shifted to UTC, ``limit=-1``, a parameter
repeated. Each parser turns such a value into :class:`QueryError` naming the parameter the caller
used, which the routes answer as a 400 ``{"error": "<field>: <message>", "field": ...}``; nothing
bad reaches the store. Pure functions, no BentoML, so tests/service/test_query_params.py covers them without
a server.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timezone

MAX_MODEL_CHARS = 256
TIME_EXAMPLE = "e.g. 2025-03-01 or 2025-03-01T12:00:00Z"


class QueryError(ValueError):
    """A bad query value; ``field`` is the parameter name the caller used."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def count_params(multi_items: list[tuple[str, str]]) -> dict[str, int]:
    """How often each parameter occurs (Starlette's ``query_params.multi_items()``)."""
    counts: dict[str, int] = {}
    for key, _ in multi_items:
        counts[key] = counts.get(key, 0) + 1
    return counts


def reject_unknown(params: Mapping[str, str], known: tuple[str, ...]) -> None:
    """A typo (``sinse=``) must not silently widen the query: unknown names are errors."""
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise QueryError(unknown[0], f"unknown query parameter (use {', '.join(known)})")


def one_value(params: Mapping[str, str], counts: Mapping[str, int], *names: str) -> tuple[str, str] | None:
    """The single value given under one of ``names`` (aliases), with the name used; a repeated
    parameter or two aliases together are errors, not silently reduced to one of them."""
    given = [n for n in names if n in params]
    if len(given) > 1:
        raise QueryError(given[1], f"give only one of {' or '.join(names)}")
    if not given:
        return None
    name = given[0]
    if counts.get(name, 1) > 1:
        raise QueryError(name, "given more than once")
    return name, params[name]


def parse_time_param(field: str, value: str) -> datetime:
    """One end of a period from ISO-8601 text (naive = UTC) or unix seconds, as an aware UTC datetime.

    Non-finite numbers (``nan``, ``inf``, ``1e400``), numbers or dates outside datetime's range
    (including a date that leaves it once shifted to UTC) and unreadable text are errors naming
    ``field``; so is an empty value (the caller leaves the parameter out for an open end)."""
    from auditor.reports import parse_time

    text = value.strip()
    if not text:
        raise QueryError(field, "is empty; leave the parameter out for an open end")
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        if not math.isfinite(seconds):
            raise QueryError(field, f"expected an ISO-8601 time or finite unix seconds, got {value!r}")
        try:
            return datetime.fromtimestamp(seconds, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise QueryError(field, f"unix seconds out of range: {value!r}") from None
    try:
        parsed = parse_time(text)
    except ValueError as e:
        raise QueryError(field, f"expected an ISO-8601 time ({TIME_EXAMPLE}) or unix seconds, got {value!r}"
                         + (f" ({e})" if "out of range" in str(e) else "")) from None
    assert parsed is not None  # only empty text parses to None, rejected above
    return parsed


def parse_period(
    params: Mapping[str, str], counts: Mapping[str, int], since_names: tuple[str, ...], until_names: tuple[str, ...]
) -> tuple[datetime | None, datetime | None, str]:
    """``(since, until, since_field)``: the optional bounds under their accepted names; an empty value
    is an open end; ``since >= until`` is an empty period, an error naming the lower bound."""
    since = until = None
    since_field, until_field = since_names[0], until_names[0]
    if (got := one_value(params, counts, *since_names)) is not None and got[1].strip():
        since_field = got[0]
        since = parse_time_param(*got)
    if (got := one_value(params, counts, *until_names)) is not None and got[1].strip():
        until_field = got[0]
        until = parse_time_param(*got)
    if since is not None and until is not None and since >= until:
        raise QueryError(since_field, f"empty period: {since_field} {since.isoformat()} is not before "
                                      f"{until_field} {until.isoformat()}")
    return since, until, since_field


def parse_model_param(params: Mapping[str, str], counts: Mapping[str, int]) -> str | None:
    """The ``model`` filter (a ``model_id``); empty means no filter."""
    got = one_value(params, counts, "model")
    if got is None or got[1] == "":
        return None
    model = got[1]
    if len(model) > MAX_MODEL_CHARS:
        raise QueryError("model", f"longer than {MAX_MODEL_CHARS} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in model):
        raise QueryError("model", "contains control characters")
    return model


def parse_int_param(
    params: Mapping[str, str], counts: Mapping[str, int], field: str, default: int, low: int, high: int
) -> int:
    """An integer in ``low..high`` written in plain decimal digits (no ``1e3``, ``1_000`` or ``0x10``);
    ``default`` when absent or empty."""
    got = one_value(params, counts, field)
    if got is None or got[1].strip() == "":
        return default
    text = got[1].strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not (digits.isascii() and digits.isdigit()):
        raise QueryError(field, f"expected an integer in {low}..{high}, got {got[1]!r}")
    if len(digits) > len(str(high)) + 1:  # far out of range; never hand int() a huge string
        raise QueryError(field, f"must be in {low}..{high}, got {got[1][:20]!r}{'...' if len(got[1]) > 20 else ''}")
    number = int(text)
    if not low <= number <= high:
        raise QueryError(field, f"must be in {low}..{high}, got {number}")
    return number


def parse_bool_param(params: Mapping[str, str], counts: Mapping[str, int], field: str) -> bool | None:
    """true/false (also 1/0, yes/no, on/off); None when absent or empty."""
    got = one_value(params, counts, field)
    if got is None or got[1] == "":
        return None
    value = got[1].strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise QueryError(field, f"expected true or false, got {got[1]!r}")
