"""What every audit store backend shares: errors, the chain report, time bounds, cursors, filters and
the per-row chain check.

Why a module of its own: the SQLite store (:mod:`auditor.runtime.store`) and the PostgreSQL store
(:mod:`auditor.runtime.store_postgres`) must give the same answers, and ``store.open_store`` picks
the backend by URL; with the shared pieces here, neither backend imports the other (no import
cycle) and a check such as "the indexed columns agree with the hashed JSON" exists once.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from .records import AuditRecord, compute_record_hash

__all__ = ["GENESIS_HASH", "ChainReport", "StoreError", "StoreUnavailable", "time_bound", "encode_cursor",
           "decode_cursor", "where_clauses", "check_row", "redact_url"]

GENESIS_HASH = "0" * 64


class StoreError(RuntimeError):
    """The store cannot be used as asked (bad URL, not an audit store, schema newer than the code)."""


class StoreUnavailable(StoreError):
    """The store could not be reached (server down, network cut, no pooled connection in time).
    Nothing about the request was wrong: the same append may succeed later, so the spool
    (:mod:`auditor.runtime.spool`) keeps the record and retries."""


class ChainReport(BaseModel):
    """Result of ``verify_chain``. ``first_bad`` is the sequence number of the first record that
    fails (for a truncated chain: the first missing one)."""

    ok: bool
    checked: int
    first_bad: int | None = None
    reason: str | None = None


def time_bound(value: datetime | float | int | str | None) -> float | None:
    """A time bound as unix seconds: aware/naive(UTC) datetime, ISO-8601 string or number."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.timestamp()
    raise TypeError(f"cannot use {type(value).__name__} as a time bound")


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"s{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("s") or not raw[1:].isascii() or not raw[1:].isdigit():
            raise ValueError
        seq = int(raw[1:])
        if seq >= 2**63:  # SQLite's INTEGER / PostgreSQL's bigint range
            raise ValueError
        return seq
    except Exception as exc:  # noqa: BLE001 - any malformed cursor is the caller's error
        raise ValueError(f"invalid cursor {cursor!r}") from exc


def where_clauses(since: Any, until: Any, flagged: bool | None, model: str | None,
                  placeholder: str = "?") -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters of the query filters (``placeholder``: "?" for sqlite3, "%s" for psycopg)."""
    clauses, params = [], []
    s, u = time_bound(since), time_bound(until)
    if s is not None:
        clauses.append(f"created_ts >= {placeholder}")
        params.append(s)
    if u is not None:
        clauses.append(f"created_ts < {placeholder}")
        params.append(u)
    if flagged is not None:
        clauses.append(f"flagged = {placeholder}")
        params.append(int(bool(flagged)))
    if model is not None:
        clauses.append(f"model_id = {placeholder}")
        params.append(model)
    return clauses, params


def check_row(row: tuple[Any, ...], expected_prev: str) -> str | None:
    """Why the stored row (seq, audit_id, request_id, created_ts, model_id, outcome, sampling_reason,
    flagged, flags, prev_hash, record_hash, data) breaks the chain, or None when it does not."""
    (seq, audit_id, request_id, created_ts, model_id, outcome, reason, flagged, flags,
     prev_hash, record_hash, data) = row
    try:
        obj = json.loads(data)
    except (TypeError, ValueError):
        return "stored JSON is unreadable"
    if not isinstance(obj, dict):
        return "stored JSON is not an object"
    if obj.get("record_hash") != record_hash:
        return "record_hash column differs from the stored record"
    if compute_record_hash(obj) != record_hash:
        return "record_hash does not match the record's content"
    if prev_hash != obj.get("prev_hash"):
        return "prev_hash column differs from the stored record"
    if prev_hash != expected_prev:
        return "prev_hash does not link to the previous record (a record was removed, reordered or altered)"
    try:
        rec = AuditRecord.model_validate(obj)
    except Exception as exc:  # noqa: BLE001
        return f"stored record does not validate: {exc.__class__.__name__}"
    expected_cols = (rec.audit_id, rec.request_id, rec.created_at.timestamp(), rec.model_id, rec.outcome,
                     rec.sampling_reason, int(rec.flagged), json.dumps(rec.flags))
    if (audit_id, request_id, created_ts, model_id, outcome, reason, flagged, flags) != expected_cols:
        return "indexed columns differ from the stored record"
    return None


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs, reports and error messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable store URL>"
    if parts.password is None and "password=" not in parts.query:
        return url  # (urlunsplit would also drop the empty host of sqlite:///path)
    if parts.password is not None:
        netloc = parts.netloc.rsplit("@", 1)
        parts = parts._replace(netloc=f"{netloc[0].split(':', 1)[0]}:***@{netloc[1]}")
    if "password=" in parts.query:  # libpq also takes ?password=...
        query = "&".join("password=***" if kv.startswith("password=") else kv for kv in parts.query.split("&"))
        parts = parts._replace(query=query)
    return urlunsplit(parts)
