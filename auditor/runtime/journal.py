"""Write-ahead journal of accepted background audits, so a killed auditor loses none without a trace.

The worker's queue lives in memory: ``kill -9`` (or an OOM kill, a power cut) of the auditor process
would take every queued job with it, and nothing would say that they had been accepted. So
:class:`~auditor.runtime.worker.AuditWorker` writes each job to this journal *before* it
acknowledges it (an ``a`` line, flushed and fsynced), and a ``d`` line once its record is stored or
it was refused. At the next start, :meth:`JobJournal.recover` returns the jobs accepted but never
finished; the worker stores a record with outcome ``cancelled`` for each, so after a crash
``sampled = recorded + dropped + cancelled`` still holds, and the journal is emptied.

What a line keeps: the job id and the few fields a ``cancelled`` record needs (request id, sampling
reason and probability, submission time). Never the prompt or the answer: the journal is not
redacted, so it must hold no user text beyond the request id.

One journal per auditor process (the default path is next to the SQLite store); replicas that
share a PostgreSQL store use its durable jobs instead. A crash between storing a record and writing
its ``d`` line makes recovery store a ``cancelled`` record for an audit that was in fact recorded
(the window is one write; the record's request id shows it). A torn last line (the crash hit the
write itself) is ignored: that job was never acknowledged.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from auditor.runtime.store import sqlite_file_of

__all__ = ["JobJournal", "journal_path_for"]

logger = logging.getLogger(__name__)

_KEPT = ("request_id", "sampling_reason", "sampling_probability", "request_id_replaced")


def journal_path_for(store_url: str) -> Path | None:
    """The default journal beside a SQLite store file (``audits.sqlite`` -> ``audits.sqlite.jobs``);
    None for in-memory stores and other schemes (nothing on disk to sit beside)."""
    path = sqlite_file_of(store_url)
    if path is None:
        return None
    return Path(path + ".jobs")


class JobJournal:
    """Append-only job journal at ``path`` (created with its directory). Thread-safe."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fsync = fsync
        self._lock = threading.Lock()
        self._file = open(self.path, "ab")  # noqa: SIM115 - held for the journal's lifetime

    def _write(self, entry: dict[str, Any], sync: bool) -> None:
        line = json.dumps(entry, separators=(",", ":"), ensure_ascii=True).encode() + b"\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()  # in the OS's hands: survives kill -9 of this process
            if sync and self.fsync:
                os.fsync(self._file.fileno())  # and a power cut, for acknowledgements

    def accepted(self, job_id: str, job: Any) -> None:
        """Journal ``job`` (an ``AuditJob``) under ``job_id`` before it is acknowledged."""
        kept = {k: getattr(job, k, None) for k in _KEPT}
        submitted = getattr(job, "submitted_at", None)
        kept["submitted_at"] = submitted.isoformat() if submitted is not None else None
        self._write({"op": "a", "id": job_id, "job": kept}, sync=True)

    def finished(self, job_id: str) -> None:
        """The job's record is stored, or it was refused: nothing to recover for it."""
        self._write({"op": "d", "id": job_id}, sync=False)

    def recover(self) -> list[dict[str, Any]]:
        """Jobs accepted but never finished (oldest first), each ``{"id", "job"}``; then the journal
        is emptied (call once, at start, before accepting jobs)."""
        pending: dict[str, dict[str, Any]] = {}
        with self._lock:
            with open(self.path, "rb") as f:
                for raw in f:
                    try:
                        entry = json.loads(raw)
                        op, job_id = entry["op"], str(entry["id"])
                    except (ValueError, KeyError, TypeError):
                        logger.warning("job journal %s: skipping an unreadable (torn) line", self.path)
                        continue
                    if op == "a":
                        pending[job_id] = {"id": job_id, "job": entry.get("job") or {}}
                    elif op == "d":
                        pending.pop(job_id, None)
            self._file.truncate(0)
            self._file.flush()
        return list(pending.values())

    def close(self) -> None:
        with self._lock:
            self._file.close()
