"""What every audit store backend shares: errors, the chain report, time bounds, cursors, filters and
the per-row chain check.

Why a module of its own: the SQLite store (:mod:`auditor.runtime.store`) and the PostgreSQL store
(:mod:`auditor.runtime.store_postgres`) must give the same answers, and ``store.open_store`` picks
the backend by URL; with the shared pieces here, neither backend imports the other (no import
cycle) and a check such as "the indexed columns agree with the hashed JSON" exists once.
"""

from __future__ import annotations

import base64
import io
import json
import os
import time
from contextlib import AbstractContextManager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from .records import AuditRecord, compute_record_hash

__all__ = ["GENESIS_HASH", "ChainReport", "StoreError", "StoreUnavailable", "time_bound", "encode_cursor",
           "decode_cursor", "where_clauses", "check_row", "redact_url", "ChainedStore", "PAGE"]

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


PAGE = 500
"""Rows read per query when a store walks its whole chain (export, verify)."""


class ChainedStore:
    """The reading half of a store that both backends share: export and chain verification.

    Written once so that the SQLite and PostgreSQL stores cannot drift apart in what a verified chain
    means. A backend provides ``_snapshot()`` (a context manager yielding a connection whose
    ``execute`` returns rows, all reads in one consistent snapshot), ``_meta(conn)`` (the anchor and
    head entries), ``_where(since, until, flagged, model)`` (clauses and parameters in its own
    placeholder style) and ``PLACEHOLDER`` (``?`` for sqlite3, ``%s`` for psycopg).
    """

    PLACEHOLDER = "?"

    def _snapshot(self) -> Any:  # pragma: no cover - every backend defines it
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - every backend defines it
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _retention_transaction(self) -> AbstractContextManager[Any]:  # pragma: no cover - every backend defines it
        """A connection in a write transaction that holds the chain (no append can interleave)."""
        raise NotImplementedError

    @staticmethod
    def _set_meta(conn: Any, items: list[tuple[str, str]]) -> None:  # pragma: no cover - every backend defines it
        raise NotImplementedError

    def apply_retention(self, max_age_days: float, *, now: datetime | float | None = None) -> int:
        """Delete records older than ``max_age_days`` (by ``created_at``) and return how many.

        Only a prefix of the chain is deleted: the oldest records up to (not including) the first
        record that is still young, so a record appended late with an old timestamp waits for the
        records before it. The hash and sequence number of the last deleted record become the
        anchor that :meth:`verify_chain` starts from. Written once for both backends, like
        verification, so what a retained chain means cannot drift between them.
        """
        max_age_days = float(max_age_days)
        if not max_age_days > 0:
            raise ValueError("max_age_days must be positive")
        now_ts = time_bound(now) if now is not None else time.time()
        cutoff = now_ts - max_age_days * 86400.0
        p = self.PLACEHOLDER
        with self._retention_transaction() as conn:
            first_young = conn.execute(f"SELECT MIN(seq) FROM audits WHERE created_ts >= {p}", (cutoff,)).fetchone()[0]
            if first_young is None:
                limit_seq = (conn.execute("SELECT MAX(seq) FROM audits").fetchone()[0] or 0) + 1
            else:
                limit_seq = first_young
            last = conn.execute(f"SELECT seq, record_hash FROM audits WHERE seq < {p} ORDER BY seq DESC LIMIT 1",
                                (limit_seq,)).fetchone()
            if last is None:
                return 0
            n = conn.execute(f"DELETE FROM audits WHERE seq <= {p}", (last[0],)).rowcount
            self._set_meta(conn, [("anchor_hash", last[1]), ("anchor_seq", str(last[0]))])
        return n

    def export_jsonl(self, path_or_file: str | os.PathLike[str] | IO[Any], since: Any = None,
                     until: Any = None) -> int:
        """Write the records (canonical JSON, one per line, chain order, hashes included) to a path
        or an open text/binary file; returns the number written. A full export can be verified
        offline: each line's ``record_hash`` is the sha256 of the line's JSON without it, and each
        ``prev_hash`` is the previous line's ``record_hash``."""
        if isinstance(path_or_file, (str, os.PathLike)):
            path = Path(path_or_file)
            tmp = path.with_name(path.name + f".tmp{os.getpid()}")
            try:
                with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
                    n = self._export(fh, since, until)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            finally:
                if tmp.exists():
                    tmp.unlink()
            return n
        return self._export(path_or_file, since, until)

    def _export(self, fh: IO[Any], since: Any, until: Any) -> int:
        binary = isinstance(fh, (io.RawIOBase, io.BufferedIOBase)) or "b" in getattr(fh, "mode", "")
        clauses, params = self._where(since, until, None, None)
        p = self.PLACEHOLDER
        sql = f"SELECT seq, data FROM audits WHERE seq > {p}" + "".join(" AND " + c for c in clauses) + \
              f" ORDER BY seq LIMIT {p}"
        n, last = 0, 0
        with self._snapshot() as conn:
            while True:
                rows = conn.execute(sql, [last, *params, PAGE]).fetchall()
                if not rows:
                    break
                for seq, data in rows:
                    line = data + "\n"
                    fh.write(line.encode("utf-8") if binary else line)
                    n += 1
                    last = seq
        return n

    def verify_chain(self) -> ChainReport:
        """Check every record's hash, every link, the columns against the hashed JSON, and the
        chain head (see the module docstring). Reads one consistent snapshot."""
        checked = 0
        with self._snapshot() as conn:
            meta = self._meta(conn)
            expected_prev = meta.get("anchor_hash") or GENESIS_HASH
            last_seq = int(meta.get("anchor_seq", "0"))
            while True:
                rows = conn.execute(
                    f"SELECT seq, audit_id, request_id, created_ts, model_id, outcome, sampling_reason, flagged,"
                    f" flags, prev_hash, record_hash, data FROM audits WHERE seq > {self.PLACEHOLDER} ORDER BY seq"
                    f" LIMIT {self.PLACEHOLDER}",
                    (last_seq, PAGE)).fetchall()
                if not rows:
                    break
                for row in rows:
                    seq = row[0]
                    problem = check_row(tuple(row), expected_prev)
                    if problem is not None:
                        return ChainReport(ok=False, checked=checked, first_bad=seq, reason=problem)
                    expected_prev = row[10]
                    last_seq = seq
                    checked += 1
            head_hash = meta.get("head_hash")
            head_seq = int(meta.get("head_seq", "0"))
            if head_hash is not None and (head_hash != expected_prev or head_seq != last_seq):
                if head_seq > last_seq:
                    return ChainReport(ok=False, checked=checked, first_bad=last_seq + 1,
                                       reason=f"chain truncated: head is record {head_seq}, last present is {last_seq}")
                return ChainReport(ok=False, checked=checked, first_bad=head_seq or None,
                                   reason="chain head does not match the last record")
            if head_hash is None and checked:
                return ChainReport(ok=False, checked=checked, first_bad=None, reason="chain head missing")
        return ChainReport(ok=True, checked=checked)
