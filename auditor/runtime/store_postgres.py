"""Hash-chained audit store on PostgreSQL (psycopg 3 + psycopg_pool): one chain for a fleet.

Same interface and guarantees as the SQLite :class:`auditor.runtime.store.AuditStore` (same tables,
same columns, same checks in :meth:`PostgresStore.verify_chain`), for several LLM replicas and
auditor workers on several hosts appending to *one* linear chain.

Why the chain head is serialized in the database: every append runs in one transaction that first
takes ``pg_advisory_xact_lock`` on a key derived from the current schema, then reads the head
(``meta``), inserts the record with ``seq = head_seq + 1`` and moves the head. The lock is held until
commit, so two writers anywhere can never read the same head and fork the chain, and a writer
killed mid-append (``kill -9``, a cut connection) loses its transaction and its lock together: the
server rolls back, nothing half-written remains. A lock in process memory would only serialize one
process. Sequence numbers are assigned under the lock (not by a sequence, whose values are not
transactional), so the chain has no gaps.

Durability: a commit returns after the WAL is flushed on the server (``synchronous_commit`` is
forced ``on`` for these transactions), so an acknowledged append survives a server crash.

Throughput: an append is one network round trip (pipeline mode), and the lock is held only while the
server reads the head, hashes and inserts the record (``sha256()`` of the client's canonical JSON with
the head's hash put in: PostgreSQL 11 or later) and flushes the commit; the client validates and
serialises the record before, and checks the server's hash after. The chain's throughput is then
bounded by the server's commit flush, not by client round trips or the client host's CPU scheduling.

Schema versions: table ``auditor_schema`` holds the version. Opening a store creates the schema if
it is missing, refuses a store whose version is newer than this code (:class:`StoreError`, saying
so), and migrates an older one in the same transaction (``_MIGRATIONS``), under the same advisory
lock, so two replicas starting at once do not both migrate.

Connection failures (server down, network cut, pool exhausted) raise
:class:`~auditor.runtime.store.StoreUnavailable`, which the spool (:mod:`auditor.runtime.spool`)
turns into "keep it on local disk and flush later". Passwords never appear in ``url`` or messages.

Tests and tools that want their own namespace pass ``options=-csearch_path=NAME`` in the URL's
query string (libpq's own parameter): everything, the lock key included, is per schema.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .records import AuditRecord, canonical_json, compute_record_hash
from .store_base import (GENESIS_HASH, ChainedStore, StoreError, StoreUnavailable, decode_cursor,
                         encode_cursor, redact_url, where_clauses)

__all__ = ["SCHEMA_VERSION", "PostgresStore", "has_audit_store", "is_postgres_url"]

SCHEMA_VERSION = 2
_LOCK_CLASS = 0x41554454  # "AUDT": the advisory lock's first key; the second is the schema's hash
_LOCK_SQL = "SELECT pg_advisory_xact_lock(%d, hashtext(current_schema()))"
_COUNTABLE = {"model_id": "model_id", "outcome": "outcome", "sampling_reason": "sampling_reason",
              "flagged": "flagged", "flags": None, "model": "model_id", "reason": "sampling_reason"}

_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS auditor_schema (version integer NOT NULL)",
    """CREATE TABLE IF NOT EXISTS audits (
        seq             bigint PRIMARY KEY,
        audit_id        text NOT NULL UNIQUE,
        request_id      text NOT NULL,
        created_ts      double precision NOT NULL,
        model_id        text NOT NULL,
        outcome         text NOT NULL,
        sampling_reason text NOT NULL,
        flagged         integer NOT NULL,
        flags           text NOT NULL,
        prev_hash       text NOT NULL,
        record_hash     text NOT NULL,
        data            text NOT NULL)""",  # text, not jsonb: jsonb would reorder the canonical JSON
    "CREATE INDEX IF NOT EXISTS audits_created ON audits (created_ts)",
    "CREATE INDEX IF NOT EXISTS audits_model ON audits (model_id, seq)",
    "CREATE INDEX IF NOT EXISTS audits_flagged ON audits (flagged, seq)",
    "CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value text NOT NULL)",
    # v2: secrets every replica must share (the sampler's key, auditor/runtime/sampling_key.py)
    "CREATE TABLE IF NOT EXISTS auditor_secrets (name text PRIMARY KEY, value text NOT NULL)",
]
# version -> statements that bring a store of that version to version + 1
_MIGRATIONS: dict[int, list[str]] = {
    1: ["CREATE TABLE IF NOT EXISTS auditor_secrets (name text PRIMARY KEY, value text NOT NULL)"],
}


# One append after the chain lock: the head (or the retention anchor, or genesis) read in this statement's
# snapshot, taken after the lock was granted; the record's hash computed by the server as sha256 of the
# client's canonical JSON with the head's hash in place of a random stand-in (the JSON text is otherwise
# final, so this is exactly compute_record_hash of the stored record; the client checks it on return);
# the row inserted with seq = head + 1 and the head moved, in one statement.
_APPEND_SQL = """
WITH head AS (
    SELECT coalesce(max(value) FILTER (WHERE key = 'head_hash'), max(value) FILTER (WHERE key = 'anchor_hash'),
                    %(genesis)s) AS prev,
           coalesce(max(value) FILTER (WHERE key = 'head_seq'), max(value) FILTER (WHERE key = 'anchor_seq'),
                    '0')::bigint + 1 AS seq
    FROM meta WHERE key IN ('head_hash', 'head_seq', 'anchor_hash', 'anchor_seq')),
hashed AS (
    SELECT prev, seq,
           encode(sha256(convert_to(replace(%(body)s::text, %(prev_token)s::text, prev), 'UTF8')), 'hex') AS digest
    FROM head),
inserted AS (
    INSERT INTO audits (seq, audit_id, request_id, created_ts, model_id, outcome, sampling_reason, flagged, flags,
                        prev_hash, record_hash, data)
    SELECT seq, %(audit_id)s, %(request_id)s, %(created_ts)s, %(model_id)s, %(outcome)s, %(sampling_reason)s,
           %(flagged)s, %(flags)s, prev, digest,
           replace(replace(%(data)s::text, %(prev_token)s::text, prev), %(hash_token)s::text, digest)
    FROM hashed
    RETURNING seq, prev_hash, record_hash),
moved AS (
    INSERT INTO meta (key, value)
    SELECT 'head_hash', record_hash FROM inserted UNION ALL SELECT 'head_seq', seq::text FROM inserted
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value)
SELECT prev_hash, record_hash FROM inserted
"""


def _read_committed(conn: Any) -> None:
    """Every transaction of the store's connections in READ COMMITTED, whatever the server's (or the
    role's) default: each statement then takes its snapshot when it starts, so a statement after
    the chain lock sees the head as the previous holder left it. Under REPEATABLE READ or
    SERIALIZABLE the snapshot of the lock statement itself would be used: a stale head, a fork."""
    import psycopg

    conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED


def is_postgres_url(url: object) -> bool:
    return isinstance(url, str) and url.split("://", 1)[0].lower() in ("postgresql", "postgres")


def has_audit_store(url: str, timeout_s: float = 5.0) -> bool:
    """Whether the database (schema) at ``url`` already holds an audit store, checked without
    creating anything (tools that read a store must not create one in a mistyped database).
    :class:`StoreUnavailable` when the server cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=max(1, int(timeout_s)), autocommit=True) as conn:
            row = conn.execute("SELECT to_regclass('auditor_schema') IS NOT NULL AND "
                               "to_regclass('audits') IS NOT NULL AND to_regclass('meta') IS NOT NULL").fetchone()
    except (psycopg.OperationalError, psycopg.InterfaceError) as error:
        raise StoreUnavailable(f"cannot connect to the audit store {redact_url(url)!r}: "
                               f"{' '.join(str(error).split()) or type(error).__name__}") from error
    return bool(row[0])


class PostgresStore(ChainedStore):
    """See the module docstring. ``pool_size`` connections at most; ``timeout_s`` bounds the wait for
    a connection (and the connect itself), after which an append fails over to the spool."""

    PLACEHOLDER = "%s"  # psycopg's parameter style, in the shared export and verify queries

    def __init__(self, url: str, *, pool_size: int = 4, timeout_s: float = 5.0) -> None:
        if not is_postgres_url(url):
            raise StoreError(f"not a PostgreSQL URL: {redact_url(str(url))!r}")
        self.url = redact_url(url)
        self._dsn = url
        self._pool_size = int(pool_size)
        self._timeout_s = float(timeout_s)
        self._lock = threading.Lock()
        self._pool: Any = None
        self._pid = os.getpid()
        try:
            with self._conn() as conn, conn.transaction():
                self._lock_chain(conn)
                self._ensure_schema(conn)
        except StoreUnavailable as error:
            self.close()
            raise StoreUnavailable(f"cannot connect to the audit store {self.url!r}: {error}") from error
        except BaseException:
            self.close()
            raise

    # -- connections ------------------------------------------------------------------------
    def _get_pool(self) -> Any:
        from psycopg_pool import ConnectionPool

        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                # after fork the parent's sockets must not be used (nor closed) in the child
                self._pool = ConnectionPool(
                    self._dsn, min_size=1, max_size=self._pool_size, timeout=self._timeout_s, open=False,
                    check=ConnectionPool.check_connection, reconnect_timeout=0, configure=_read_committed,
                    kwargs={"autocommit": True, "connect_timeout": max(1, int(self._timeout_s)),
                            "application_name": "interaction-auditor"})
                self._pool.open(wait=False)
                self._pid = os.getpid()
            return self._pool

    @contextmanager
    def _conn(self) -> Iterator[Any]:
        """A pooled connection; connection-level failures become :class:`StoreUnavailable`."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._get_pool().connection() as conn:
                yield conn
        except (PoolTimeout, psycopg.OperationalError, psycopg.InterfaceError) as error:
            if isinstance(error, psycopg.errors.InsufficientPrivilege):
                raise
            detail = " ".join(str(error).split()) or "connection lost"  # libpq's messages span lines
            raise StoreUnavailable(f"{type(error).__name__}: {detail}") from error

    @staticmethod
    def _lock_chain(conn: Any) -> None:
        conn.execute(_LOCK_SQL % _LOCK_CLASS)

    def _ensure_schema(self, conn: Any) -> None:
        encoding = conn.execute("SHOW server_encoding").fetchone()[0]
        if str(encoding).upper() == "SQL_ASCII":  # bytes kept unconverted: the server could not hash the UTF-8 text
            raise StoreError(f"the audit store database {self.url!r} uses encoding SQL_ASCII; create it with "
                             "ENCODING 'UTF8'")
        for stmt in _SCHEMA[:1]:
            conn.execute(stmt)
        row = conn.execute("SELECT max(version) FROM auditor_schema").fetchone()
        version = row[0]
        if version is None:
            for stmt in _SCHEMA[1:]:
                conn.execute(stmt)
            conn.execute("INSERT INTO auditor_schema (version) VALUES (%s)", (SCHEMA_VERSION,))
            return
        if version > SCHEMA_VERSION:
            raise StoreError(f"the audit store {self.url!r} has schema version {version}, newer than this "
                             f"interaction-auditor understands ({SCHEMA_VERSION}); upgrade interaction-auditor")
        import psycopg

        start = version
        try:
            while version < SCHEMA_VERSION:  # inside the caller's transaction: all migrations or none
                for stmt in _MIGRATIONS[version]:
                    conn.execute(stmt)
                version += 1
        except psycopg.OperationalError:
            raise  # the connection, not the migration: StoreUnavailable (see _conn), retried later
        except psycopg.Error as error:  # the transaction rolls back: the store stays at `start`
            raise StoreError(f"migrating the audit store {self.url!r} from schema version {start} to "
                             f"{SCHEMA_VERSION} failed at version {version} ({type(error).__name__}: "
                             f"{' '.join(str(error).split())}); the store is unchanged") from error
        conn.execute("UPDATE auditor_schema SET version = %s", (version,))

    @contextmanager
    def _snapshot(self) -> Iterator[Any]:
        with self._conn() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    def schema_version(self) -> int:
        with self._conn() as conn:
            return int(conn.execute("SELECT max(version) FROM auditor_schema").fetchone()[0])

    def get_or_create_secret(self, name: str, value: str) -> str:
        """The secret ``name``, set to ``value`` by the first replica that asks (so every replica
        sharing the store agrees, e.g. on the sampling key)."""
        with self._conn() as conn, conn.transaction():
            conn.execute("INSERT INTO auditor_secrets (name, value) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                         (name, value))
            return str(conn.execute("SELECT value FROM auditor_secrets WHERE name = %s", (name,)).fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close(timeout=1.0)
            self._pool = None

    @staticmethod
    def _meta(conn: Any) -> dict[str, str]:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())

    @staticmethod
    def _set_meta(conn: Any, items: list[tuple[str, str]]) -> None:
        for key, value in items:
            conn.execute("INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE "
                         "SET value = EXCLUDED.value", (key, value))

    # -- writes -----------------------------------------------------------------------------
    def append(self, record: AuditRecord) -> AuditRecord:
        """Chain and store ``record`` (see :meth:`auditor.runtime.store.AuditStore.append`);
        committed and flushed on the server when it returns. ``ValueError`` for a duplicate
        ``audit_id``; :class:`StoreUnavailable` when the server cannot be reached (nothing was
        stored, or, if the connection broke during the commit, possibly the record: a retry then
        gets ``ValueError``, never a second copy)."""
        import psycopg

        if not isinstance(record, AuditRecord):
            raise TypeError("append() takes an AuditRecord")
        # Validated and serialised here, outside the lock, with random stand-ins for the two hashes: the
        # server puts the head's hash in, computes the record's sha256 and stores it (see _APPEND_SQL), so
        # no client round trip (nor the client's scheduling on a busy host) happens while the lock is held
        stored = AuditRecord.model_validate(record.model_copy(update={"prev_hash": None, "record_hash": None})
                                            .model_dump())
        prev_token, hash_token = secrets.token_hex(32), secrets.token_hex(32)  # 64 hex digits, as the hashes
        stored.prev_hash = prev_token
        body = canonical_json(stored.hash_payload())
        stored.record_hash = hash_token
        data = canonical_json(stored)
        with self._conn() as conn:
            try:
                # pipeline mode: BEGIN, SET, the lock, the insert and COMMIT in one round trip; the lock
                # is held from the server's reading of the head to the WAL flush of the commit, no longer
                with conn.pipeline(), conn.transaction():  # READ COMMITTED (see _read_committed)
                    conn.execute("SET LOCAL synchronous_commit = on")  # durable whatever the server's default
                    self._lock_chain(conn)  # its own statement: the insert's snapshot is taken after it
                    cur = conn.execute(_APPEND_SQL, {
                        "genesis": GENESIS_HASH, "prev_token": prev_token, "hash_token": hash_token, "body": body,
                        "data": data, "audit_id": stored.audit_id, "request_id": stored.request_id,
                        "created_ts": stored.created_at.timestamp(), "model_id": stored.model_id,
                        "outcome": stored.outcome, "sampling_reason": stored.sampling_reason,
                        "flagged": int(stored.flagged), "flags": json.dumps(stored.flags)})
            except psycopg.errors.UniqueViolation as exc:
                raise ValueError(f"audit_id {record.audit_id!r} is already stored") from exc
            prev, digest = cur.fetchone()
        stored.prev_hash = prev
        stored.record_hash = digest
        if digest != compute_record_hash(stored):  # the server's text is the client's (SQL_ASCII refused at open)
            raise StoreError(f"the server hashed audit {stored.audit_id} as {digest}, not as the record's "
                             "canonical JSON: verify_chain will name it")
        return stored

    @contextmanager
    def _retention_transaction(self) -> Iterator[Any]:
        with self._conn() as conn, conn.transaction():
            self._lock_chain(conn)
            yield conn

    # -- reads ------------------------------------------------------------------------------
    def get(self, audit_id: str) -> AuditRecord | None:
        with self._conn() as conn:
            row = conn.execute("SELECT data FROM audits WHERE audit_id = %s", (audit_id,)).fetchone()
        return None if row is None else AuditRecord.model_validate_json(row[0])

    @staticmethod
    def _where(since: Any, until: Any, flagged: bool | None, model: str | None) -> tuple[list[str], list[Any]]:
        return where_clauses(since, until, flagged, model, placeholder="%s")

    def query(self, since: Any = None, until: Any = None, flagged: bool | None = None, model: str | None = None,
              limit: int = 100, cursor: str | None = None) -> tuple[list[AuditRecord], str | None]:
        """Records in chain order; see :meth:`auditor.runtime.store.AuditStore.query`."""
        limit = int(limit)
        if not 1 <= limit <= 10_000:
            raise ValueError("limit must be in 1..10000")
        clauses, params = self._where(since, until, flagged, model)
        if cursor:
            clauses.append("seq > %s")
            params.append(decode_cursor(cursor))
        sql = "SELECT seq, data FROM audits" + (" WHERE " + " AND ".join(clauses) if clauses else "")
        with self._conn() as conn:
            rows = conn.execute(sql + " ORDER BY seq LIMIT %s", [*params, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        records = [AuditRecord.model_validate_json(r[1]) for r in rows]
        return records, (encode_cursor(rows[-1][0]) if more and rows else None)

    def count(self) -> int:
        with self._conn() as conn:
            return int(conn.execute("SELECT count(*) FROM audits").fetchone()[0])

    def count_by(self, field: str) -> dict[str, int]:
        """Record counts grouped by a field; see :meth:`auditor.runtime.store.AuditStore.count_by`."""
        if field not in _COUNTABLE:
            raise ValueError(f"cannot count by {field!r}; choose one of {sorted(_COUNTABLE)}")
        col = _COUNTABLE[field]
        with self._conn() as conn:
            if col is None:
                rows = conn.execute("SELECT j, count(*) FROM audits, json_array_elements_text(audits.flags::json) AS j"
                                    " GROUP BY j").fetchall()
            else:
                rows = conn.execute(f"SELECT {col}, count(*) FROM audits GROUP BY {col}").fetchall()
        if col == "flagged":
            return {("true" if k else "false"): int(n) for k, n in rows}
        return {str(k): int(n) for k, n in rows}

