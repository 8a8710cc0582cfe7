"""Hash-chained audit store on SQLite (stdlib ``sqlite3``).

Every record carries ``prev_hash`` (the previous record's ``record_hash``; 64 zeros for the first
record) and ``record_hash`` = sha256 of the record's canonical JSON without ``record_hash``
(:func:`auditor.runtime.records.compute_record_hash`). :meth:`AuditStore.append` reads the chain head and
inserts the record inside one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock
before reading, so appenders in several threads and processes always extend one linear chain.

Durability: WAL journal with ``synchronous=FULL``. A commit is acknowledged (``append`` returns)
only after the WAL frame has been written *and fsynced*. SQLite's documentation
(https://www.sqlite.org/pragma.html#pragma_synchronous) states that committed transactions are
durable across application crashes (``kill -9``) in every synchronous mode, but that in WAL mode
with ``synchronous=NORMAL`` a commit "might roll back following a power loss or system crash".
Audit records are compliance evidence and appends are rare (one per audit, each audit costs
seconds), so the one fsync per commit is worth paying: FULL keeps every acknowledged record across
power loss too. ``busy_timeout`` (default 30 s) makes writers from other processes wait for the
lock instead of failing.

Tamper evidence: :meth:`AuditStore.verify_chain` recomputes every hash, checks each ``prev_hash``
link, checks that the indexed columns agree with the hashed JSON, and compares the last record
with the chain head kept in the ``meta`` table (updated in the same transaction as each append),
so edited fields, deleted rows (also at the end) and reordered rows are reported. Someone who can
rewrite the whole file can rebuild a valid chain; export or anchor the head hash elsewhere (e.g.
the JSONL export, a log line) to detect that.

Backends: :func:`open_store` returns this store for ``sqlite:`` URLs and paths, and the PostgreSQL store
(:mod:`auditor.runtime.store_postgres`: one chain for a fleet of replicas) for ``postgresql://`` URLs;
both are built from :mod:`auditor.runtime.store_base` and give the same answers.

Schema versions: ``meta.schema_version`` (where every release since the first has kept it, so an
older release reading a newer file finds the number and refuses). Opening a store of an older
version migrates it in the same ``BEGIN IMMEDIATE`` transaction that checks the version (all steps
or none; concurrent openers wait); a store newer than this code is refused with a
:class:`StoreError` naming both versions.

Retention (:meth:`AuditStore.apply_retention`) deletes the oldest records as a prefix of the chain
and stores an anchor (sequence number and ``record_hash`` of the last deleted record);
verification then starts from the anchor instead of the genesis hash.

One sqlite3 connection per store object, guarded by a lock (simple and sufficient: appends are
rare and every statement is short). Long reads (``verify_chain``, ``export_jsonl``) use their own
short-lived connection and one read transaction, i.e. a consistent snapshot that does not block
writers (WAL). A store object used after ``fork`` reopens its connection in the child.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .records import AuditRecord, canonical_json, compute_record_hash
from .store_base import (GENESIS_HASH, ChainedStore, ChainReport, StoreError, StoreUnavailable, decode_cursor,
                         encode_cursor, redact_url, where_clauses)

__all__ = ["GENESIS_HASH", "DEFAULT_URL", "ChainReport", "AuditStore", "open_store", "StoreError", "StoreUnavailable",
           "sqlite_path_from_url"]

DEFAULT_URL = "sqlite:///./audits.sqlite"
SCHEMA_VERSION = 2  # meta.schema_version of the SQLite layout (the same numbering as the PostgreSQL store's)
_COUNTABLE = {"model_id": "model_id", "outcome": "outcome", "sampling_reason": "sampling_reason",
              "flagged": "flagged", "flags": None, "model": "model_id", "reason": "sampling_reason"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audits (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    audit_id        TEXT NOT NULL UNIQUE,
    request_id      TEXT NOT NULL,
    created_ts      REAL NOT NULL,
    model_id        TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    sampling_reason TEXT NOT NULL,
    flagged         INTEGER NOT NULL,
    flags           TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    record_hash     TEXT NOT NULL,
    data            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audits_created ON audits (created_ts);
CREATE INDEX IF NOT EXISTS audits_model ON audits (model_id, seq);
CREATE INDEX IF NOT EXISTS audits_flagged ON audits (flagged, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# version -> statements that bring a store of that version to version + 1. _SCHEMA is the version-1
# layout (the first release's), so a new store takes the same path as an old one: every migration runs
# on every new store, none is tried for the first time on a user's file.
_MIGRATIONS: dict[int, list[str]] = {
    # v2: the secrets every process of the deployment must share (the sampler's key,
    # auditor/runtime/sampling_key.py), part of the layout as in the PostgreSQL store's version 2
    1: ["CREATE TABLE IF NOT EXISTS auditor_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)"],
}


def sqlite_path_from_url(url: str | os.PathLike[str]) -> str:
    """The SQLite file a store URL names (":memory:" for an in-memory store); StoreError for other schemes."""
    if isinstance(url, os.PathLike):
        return os.fspath(url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        return path or ":memory:"
    if url in ("sqlite://", "sqlite:", ":memory:"):
        return ":memory:"
    if "://" in url:
        raise StoreError(f"unsupported store URL {redact_url(url)!r}: sqlite:///PATH, a file path or "
                         "postgresql://user@host:port/db")
    return url


def sqlite_file_of(url: str) -> str | None:
    """The database file a store URL names, or None where there is no file: an in-memory store, or
    another scheme (a server store). For what sits beside the store file (the job journal, the
    sampling key's reader), which has nowhere to go without one."""
    try:
        path = sqlite_path_from_url(url)
    except StoreError:
        return None
    return None if path in ("", ":memory:") else path


_encode_cursor = encode_cursor
_decode_cursor = decode_cursor


class AuditStore(ChainedStore):
    """See the module docstring. Use :func:`open_store` to create one."""

    def __init__(self, url: str | os.PathLike[str] = DEFAULT_URL, *, busy_timeout_ms: int = 30_000,
                 synchronous: str = "FULL") -> None:
        self.url = str(url)
        self.path = sqlite_path_from_url(url)
        if synchronous.upper() not in ("FULL", "EXTRA", "NORMAL"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        if self.path != ":memory:":
            parent = Path(self.path).expanduser().resolve().parent
            parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            conn = self._connection()
            with self._write(conn):
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '1')")  # a new store
                self._migrate(conn)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the store to :data:`SCHEMA_VERSION` inside the caller's write transaction: every
        migration and the new version number commit together, or (an error, a crash) none does.
        A store written by a newer release is refused rather than misread."""
        version = int(self._meta(conn)["schema_version"])
        if version > SCHEMA_VERSION:
            raise StoreError(f"the audit store {self.path!r} has schema version {version}, newer than this "
                             f"interaction-auditor understands ({SCHEMA_VERSION}); upgrade interaction-auditor")
        start = version
        try:
            while version < SCHEMA_VERSION:
                for stmt in _MIGRATIONS[version]:
                    conn.execute(stmt)
                version += 1
        except sqlite3.Error as error:
            raise StoreError(f"migrating the audit store {self.path!r} from schema version {start} to "
                             f"{SCHEMA_VERSION} failed at version {version} ({error}); the store is unchanged") from error
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))

    def schema_version(self) -> int:
        """The layout version of this store (:data:`SCHEMA_VERSION` once opened)."""
        with self._lock:
            return int(self._meta(self._connection())["schema_version"])

    # -- connections ------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_ms / 1000.0, isolation_level=None,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        if self.path != ":memory:":
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                conn.close()
                raise StoreError(f"could not enable WAL on {self.path} (journal_mode={mode})")
        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        return conn

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            # after fork the parent's connection must not be used (nor closed) in the child
            self._conn = self._open()
            self._pid = os.getpid()
        return self._conn

    @contextmanager
    def _write(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """A separate connection in one read transaction (consistent view, does not block writers)."""
        if self.path == ":memory:":
            with self._lock:
                conn = self._connection()
                conn.execute("BEGIN")
                try:
                    yield conn
                finally:
                    conn.execute("COMMIT")
            return
        conn = self._open()
        try:
            conn.execute("BEGIN")
            conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()  # start the read snapshot now
            yield conn
            conn.execute("COMMIT")
        finally:
            conn.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    # -- meta -------------------------------------------------------------------------------
    @staticmethod
    def _meta(conn: sqlite3.Connection) -> dict[str, str]:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())

    # -- writes -----------------------------------------------------------------------------
    def append(self, record: AuditRecord) -> AuditRecord:
        """Chain and store ``record``; returns the stored copy with ``prev_hash`` and
        ``record_hash`` set. Durable (fsynced) when it returns. Raises ``ValueError`` if a record
        with the same ``audit_id`` is already stored."""
        if not isinstance(record, AuditRecord):
            raise TypeError("append() takes an AuditRecord")
        with self._lock:
            conn = self._connection()
            with self._write(conn):
                meta = self._meta(conn)
                prev = meta.get("head_hash") or meta.get("anchor_hash") or GENESIS_HASH
                stored = record.model_copy(update={"prev_hash": prev, "record_hash": None})
                stored = AuditRecord.model_validate(stored.model_dump())  # re-validate the copy
                digest = compute_record_hash(stored)
                stored.record_hash = digest
                data = canonical_json(stored)
                try:
                    cur = conn.execute(
                        "INSERT INTO audits (audit_id, request_id, created_ts, model_id, outcome, sampling_reason,"
                        " flagged, flags, prev_hash, record_hash, data) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (stored.audit_id, stored.request_id, stored.created_at.timestamp(), stored.model_id,
                         stored.outcome, stored.sampling_reason, int(stored.flagged), json.dumps(stored.flags),
                         prev, digest, data),
                    )
                except sqlite3.IntegrityError as exc:
                    raise ValueError(f"audit_id {stored.audit_id!r} is already stored") from exc
                except sqlite3.OperationalError as exc:  # locked past busy_timeout, disk full, I/O error
                    raise StoreUnavailable(f"sqlite3.OperationalError: {exc}") from exc
                conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                 [("head_hash", digest), ("head_seq", str(cur.lastrowid))])
        return stored

    @contextmanager
    def _retention_transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            with self._write(conn):
                yield conn

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, items: list[tuple[str, str]]) -> None:
        conn.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", items)

    # -- reads ------------------------------------------------------------------------------
    def get(self, audit_id: str) -> AuditRecord | None:
        with self._lock:
            row = self._connection().execute("SELECT data FROM audits WHERE audit_id = ?", (audit_id,)).fetchone()
        return None if row is None else AuditRecord.model_validate_json(row[0])

    @staticmethod
    def _where(since: Any, until: Any, flagged: bool | None, model: str | None) -> tuple[list[str], list[Any]]:
        return where_clauses(since, until, flagged, model)

    def query(self, since: Any = None, until: Any = None, flagged: bool | None = None, model: str | None = None,
              limit: int = 100, cursor: str | None = None) -> tuple[list[AuditRecord], str | None]:
        """Records in chain order (oldest first) with ``since <= created_at < until``; ``flagged``
        True/False selects records with/without flags. Returns ``(records, next_cursor)``; pass
        ``next_cursor`` back to get the next page, None when there is none."""
        limit = int(limit)
        if not 1 <= limit <= 10_000:
            raise ValueError("limit must be in 1..10000")
        clauses, params = self._where(since, until, flagged, model)
        if cursor:
            clauses.append("seq > ?")
            params.append(_decode_cursor(cursor))
        sql = "SELECT seq, data FROM audits"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq LIMIT ?"
        with self._lock:
            rows = self._connection().execute(sql, [*params, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        records = [AuditRecord.model_validate_json(r[1]) for r in rows]
        return records, (_encode_cursor(rows[-1][0]) if more and rows else None)

    def count(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT COUNT(*) FROM audits").fetchone()[0]

    def count_by(self, field: str) -> dict[str, int]:
        """Record counts grouped by ``model_id`` (alias ``model``), ``outcome``, ``sampling_reason``
        (alias ``reason``), ``flagged`` ("true"/"false") or ``flags`` (per flag reason)."""
        if field not in _COUNTABLE:
            raise ValueError(f"cannot count by {field!r}; choose one of {sorted(_COUNTABLE)}")
        col = _COUNTABLE[field]
        with self._lock:
            conn = self._connection()
            if col is None:
                rows = conn.execute("SELECT j.value, COUNT(*) FROM audits, json_each(audits.flags) AS j "
                                    "GROUP BY j.value").fetchall()
            else:
                rows = conn.execute(f"SELECT {col}, COUNT(*) FROM audits GROUP BY {col}").fetchall()
        if col == "flagged":
            return {("true" if k else "false"): n for k, n in rows}
        return {str(k): n for k, n in rows}


def open_store(url: str | os.PathLike[str] | None = None, **kwargs: Any) -> Any:
    """Open (creating if needed) the store at ``url``: ``sqlite:///relative/path``,
    ``sqlite:////absolute/path``, a plain path, ``sqlite:///:memory:``, or
    ``postgresql://user[:password]@host[:port]/db`` (one chain for a fleet:
    :class:`auditor.runtime.store_postgres.PostgresStore`). Default ``sqlite:///./audits.sqlite``.
    An unreachable PostgreSQL server raises :class:`StoreUnavailable`."""
    from .store_postgres import PostgresStore, is_postgres_url

    if is_postgres_url(url):
        return PostgresStore(str(url), **kwargs)
    return AuditStore(url or DEFAULT_URL, **kwargs)
