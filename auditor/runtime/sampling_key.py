"""The secret key of the sampler's request-id hash, generated at first start and kept with the store.

Sampling is a deterministic function of the request id (:func:`auditor.runtime.sampling.request_uniform`).
Unkeyed, it is a *public* function: a caller who chooses its own request ids can compute offline
which ids are never sampled and use only those, so its traffic is never audited. Keyed with a
secret, the caller cannot predict the decision. ``AUDITOR_SAMPLING_KEY`` sets the key; when it is
unset, :func:`ensure_sampling_key` creates a random 32-byte key once and keeps it in the record
store, so every process and replica that shares the store (and every restart) uses the same key,
and the same request id still gets the same decision everywhere.

Where the key is kept: for a SQLite store, a table ``auditor_secrets`` in the same database file
(first writer wins inside one ``BEGIN IMMEDIATE`` transaction, so replicas starting together agree).
A PostgreSQL store keeps it in its secrets table (``get_or_create_secret``, opened here when no store
is given); other stores keep it if they offer that method; otherwise, and for
an in-memory store, the key is random per process (still unpredictable, no longer shared: set
``AUDITOR_SAMPLING_KEY`` explicitly there).
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from pathlib import Path
from typing import Any

from auditor.runtime.store import sqlite_file_of

__all__ = ["SECRET_NAME", "ensure_sampling_key"]

logger = logging.getLogger(__name__)

SECRET_NAME = "sampling_key"


def _sqlite_secret(path: str, name: str, fresh: str) -> str:
    Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS auditor_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
            conn.execute("INSERT OR IGNORE INTO auditor_secrets (name, value) VALUES (?, ?)", (name, fresh))
            value = conn.execute("SELECT value FROM auditor_secrets WHERE name = ?", (name,)).fetchone()[0]
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return str(value)
    finally:
        conn.close()


def ensure_sampling_key(store_url: str, configured: bytes | None = None, *, store: Any = None) -> bytes:
    """``configured`` when given; else the key kept with the store at ``store_url`` (created on
    first use). ``store``: an open store of another kind that may keep it (see the module docstring)."""
    if configured:
        return configured
    fresh = secrets.token_hex(32)
    path = sqlite_file_of(store_url)
    if path is not None:
        return _sqlite_secret(path, SECRET_NAME, fresh).encode("ascii")
    opened = None
    if store is None and store_url.startswith(("postgresql://", "postgres://")):
        try:  # the fleet store keeps it too, so every LLM replica samples alike
            from auditor.runtime.store import open_store

            store = opened = open_store(store_url)
        except Exception as error:  # noqa: BLE001 - an unreachable store must not stop the LLM
            logger.warning("cannot open AUDITOR_STORE_URL to read the sampling key: %s", error)
    try:
        keeper = getattr(store, "get_or_create_secret", None)
        if keeper is not None:
            return str(keeper(SECRET_NAME, fresh)).encode("ascii")
    except Exception as error:  # noqa: BLE001
        logger.warning("the store could not keep the sampling key: %s", error)
    finally:
        if opened is not None:
            opened.close()
    logger.warning("AUDITOR_SAMPLING_KEY is unset and the store cannot keep a key: using a random key for this "
                   "process (sampling stays unpredictable, but replicas no longer agree; set the key explicitly)")
    return fresh.encode("ascii")
