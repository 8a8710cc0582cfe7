"""Forced audits as durable jobs: they survive the death of the auditor process and are run by
whichever auditor worker is alive.

Why: a forced audit (``audit.force``: compliance staff asked for *this* request) is a promise, not a
sample. The in-memory queue of :class:`~auditor.runtime.worker.AuditWorker` loses it with a killed
process; sampled audits may be lost that way (and are counted), forced ones may not. So the Auditor
service writes each forced job to a table ``audit_jobs`` in the store's own database (the SQLite
file by default, the fleet's PostgreSQL database otherwise) before it acknowledges the hand-off,
and a :class:`JobPump` thread in every auditor process claims and runs them.

Claiming: a job is claimed with a lease (``lease_s``, longer than an audit's budget). On PostgreSQL
the claim is one ``UPDATE ... WHERE job_id = (SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1)``, so
concurrent workers on any host never claim the same job and never wait for each other; on SQLite
one ``BEGIN IMMEDIATE`` transaction. A job whose lease ran out (its worker died) is claimable again.
A finished job is deleted. Delivery is at least once: a worker killed after its audit record was
appended but before the job was deleted leaves the job to be run again (a second record of the
same request, with its own ``audit_id``), never zero times.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from .jobs import AuditJob
from .store_base import StoreError, StoreUnavailable

__all__ = ["DurableJobs", "JobPump", "durable_jobs_for"]

logger = logging.getLogger(__name__)

_TABLE = ("CREATE TABLE IF NOT EXISTS audit_jobs (job_id TEXT PRIMARY KEY, payload TEXT NOT NULL, "
          "state TEXT NOT NULL, owner TEXT, lease_until DOUBLE PRECISION, attempts INTEGER NOT NULL, "
          "created_ts DOUBLE PRECISION NOT NULL)")


class DurableJobs:
    """The ``audit_jobs`` table of the store at ``url`` (see the module docstring)."""

    def __init__(self, url: str, *, lease_s: float = 900.0, timeout_s: float = 5.0) -> None:
        from .store import sqlite_path_from_url
        from .store_postgres import is_postgres_url

        self.lease_s = float(lease_s)
        self._timeout_s = float(timeout_s)
        self._pg = is_postgres_url(url)
        self._url = url
        self._path = None if self._pg else sqlite_path_from_url(url)
        if self._path == ":memory:":
            raise StoreError("durable jobs need a database that outlives the process, not :memory:")
        with self._tx() as cur:
            cur.execute(_TABLE)

    # -- one short transaction per operation (forced audits are rare) --------------------------
    def _tx(self) -> Any:
        return _PgTx(self._url, self._timeout_s) if self._pg else _SqliteTx(self._path or "")

    def enqueue(self, job: AuditJob) -> str:
        """Store ``job``; durable when this returns. Returns its job id."""
        job_id = uuid.uuid4().hex
        with self._tx() as cur:
            cur.execute("INSERT INTO audit_jobs (job_id, payload, state, owner, lease_until, attempts, created_ts) "
                        "VALUES (?, ?, 'queued', NULL, NULL, 0, ?)", (job_id, job.model_dump_json(), time.time()))
        return job_id

    def claim(self, owner: str) -> tuple[str, AuditJob] | None:
        """The oldest job nobody holds (queued, or its lease ran out), now leased to ``owner``."""
        now = time.time()
        pick = ("SELECT job_id FROM audit_jobs WHERE state = 'queued' OR (state = 'running' AND lease_until < ?) "
                "ORDER BY created_ts, job_id LIMIT 1")
        with self._tx() as cur:
            if self._pg:
                cur.execute("UPDATE audit_jobs SET state = 'running', owner = ?, lease_until = ?, "
                            f"attempts = attempts + 1 WHERE job_id = ({pick} FOR UPDATE SKIP LOCKED) "
                            "RETURNING job_id, payload",
                            (owner, now + self.lease_s, now))
                row = cur.fetchone()
            else:
                row = cur.execute(pick.replace("job_id FROM", "job_id, payload FROM"), (now,)).fetchone()
                if row is not None:
                    cur.execute("UPDATE audit_jobs SET state = 'running', owner = ?, lease_until = ?, "
                                "attempts = attempts + 1 WHERE job_id = ?", (owner, now + self.lease_s, row[0]))
        return None if row is None else (row[0], AuditJob.model_validate_json(row[1]))

    def complete(self, job_id: str) -> None:
        with self._tx() as cur:
            cur.execute("DELETE FROM audit_jobs WHERE job_id = ?", (job_id,))

    def pending(self) -> int:
        with self._tx() as cur:
            cur.execute("SELECT count(*) FROM audit_jobs")
            return int(cur.fetchone()[0])


class _SqliteTx:
    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)

    def __enter__(self) -> sqlite3.Cursor:
        self._conn.execute("PRAGMA synchronous = FULL")
        self._conn.execute("BEGIN IMMEDIATE")
        return self._conn.cursor()

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        try:
            self._conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._conn.close()


class _PgTx:
    def __init__(self, url: str, timeout_s: float) -> None:
        import psycopg

        try:
            self._conn = psycopg.connect(url, autocommit=False, connect_timeout=max(1, int(timeout_s)))
        except psycopg.OperationalError as error:
            raise StoreUnavailable(" ".join(str(error).split())) from error

    def __enter__(self) -> Any:
        return self

    def execute(self, sql: str, params: Any = ()) -> Any:
        """sqlite3-shaped: ``?`` placeholders, so both backends share one SQL text."""
        self._cursor = self._conn.execute(sql.replace("?", "%s"), params)
        return self._cursor

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        try:
            if exc_type:
                self._conn.rollback()
            else:
                self._conn.commit()
        finally:
            self._conn.close()


def durable_jobs_for(url: str, lease_s: float) -> DurableJobs | None:
    """The durable job table beside the store at ``url``; None (with a warning) where there can be
    none (an in-memory store) or it cannot be reached now (forced audits then use the in-memory
    queue, as sampled ones do)."""
    try:
        return DurableJobs(url, lease_s=lease_s)
    except (StoreError, sqlite3.Error, OSError) as error:
        logger.warning("forced audits are not durable: %s", error)
        return None


class JobPump:
    """A thread that claims durable jobs and runs them with ``run(job)`` (e.g.
    ``AuditWorker.audit_now``), one at a time; ``poll_s`` between empty claims."""

    def __init__(self, jobs: DurableJobs, run: Callable[[AuditJob], Any], *, owner: str | None = None,
                 poll_s: float = 1.0) -> None:
        self.jobs = jobs
        self.run = run
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.poll_s = float(poll_s)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.done = 0

    def start(self) -> JobPump:
        self._thread = threading.Thread(target=self._loop, name="audit-job-pump", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                claimed = self.jobs.claim(self.owner)
            except Exception:  # noqa: BLE001 - the database may be down: retry later
                logger.warning("claiming a durable audit job failed", exc_info=True)
                claimed = None
            if claimed is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()
                continue
            job_id, job = claimed
            try:
                self.run(job)
            except Exception:  # noqa: BLE001 - the runner stores its own failures; keep the job for a retry
                logger.exception("durable audit job %s failed", job_id)
                continue
            try:
                self.jobs.complete(job_id)
                self.done += 1
            except Exception:  # noqa: BLE001 - completed later by nobody: it runs again (at least once)
                logger.warning("could not mark durable audit job %s done", job_id, exc_info=True)
