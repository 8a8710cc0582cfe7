"""The outage spool: an acknowledged audit record is never lost because the store did not answer.

Why: with a PostgreSQL store, appends cross a network. A server restart, a network cut or an
exhausted connection pool would otherwise turn a finished audit (seconds of compute, compliance
evidence) into a log line. :class:`SpoolingStore` wraps any store: when ``append`` raises
:class:`~auditor.runtime.store_base.StoreUnavailable`, the record is written to a bounded spool
directory on local disk (one file per record, fsynced, renamed into place) and ``append`` returns;
a flusher thread appends the spooled records, oldest first, into the chain once the store answers
again. While anything is spooled, new records queue *behind* it, so the chain keeps the order in
which audits finished.

Idempotent flushing: a record whose append reached the server but whose acknowledgement was lost
(the connection broke during the commit) is spooled too; flushing it again fails with "audit_id
already stored" (``ValueError``), which counts as flushed. A process killed while flushing leaves
its files, and the next process (or another worker sharing the directory) flushes them: a file lock
makes one flusher at a time. So a record is in the chain exactly once.

Bounded: at most ``max_records`` files. A record that finds the spool full is dropped, counted
(``store_spool_dropped_total``) and reported to the caller as :class:`StoreUnavailable`. Depth,
flushes and drops are Prometheus metrics (docs/metrics-spec.md) so an outage shows on the
dashboard and in the ``AuditStoreSpooling`` / ``AuditStoreSpoolDropping`` alerts.
"""

from __future__ import annotations

import fcntl
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from .records import AuditRecord
from .store_base import StoreUnavailable

__all__ = ["Spool", "SpoolingStore", "default_spool_dir", "open_spooled_store", "open_service_store"]

logger = logging.getLogger(__name__)


class _SpoolTelemetry(Protocol):
    def set_spool_depth(self, n: int) -> None: ...
    def record_spool_flush(self, n: int = 1) -> None: ...
    def record_spool_drop(self) -> None: ...


class _NullTelemetry:
    def set_spool_depth(self, n: int) -> None: ...
    def record_spool_flush(self, n: int = 1) -> None: ...
    def record_spool_drop(self) -> None: ...


class Spool:
    """A directory of spooled records, ``<time_ns>-<pid>-<n>.json``: name order is arrival order."""

    def __init__(self, directory: str | os.PathLike[str], max_records: int = 10_000) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.directory = Path(directory).expanduser()  # created by the first put: no outage, no directory
        self.max_records = int(max_records)
        self._counter = itertools.count()

    def files(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob("*.json") if not p.name.startswith("."))

    def depth(self) -> int:
        return len(self.files())

    def put(self, record: AuditRecord) -> bool:
        """Write ``record`` durably (fsync file and directory); False when the spool is full."""
        if self.depth() >= self.max_records:
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{os.getpid()}-{next(self._counter):08d}.json"
        tmp = self.directory / f".{name}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(record.model_dump_json())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.directory / name)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return True

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """One flusher at a time across the processes that share this directory."""
        with open(self.directory / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class SpoolingStore:
    """``store`` with an outage spool in front of ``append`` (see the module docstring). Reads
    (``query``, ``get``, ``verify_chain``, ...) go straight to ``store``. ``retry_s``: how often the
    background flusher retries while records are spooled."""

    def __init__(self, store: Any, spool: Spool, telemetry: _SpoolTelemetry | None = None, *,
                 retry_s: float = 2.0, opener: Callable[[], Any] | None = None, background: bool = True) -> None:
        self._store = store
        self._opener = opener  # opens the store later when it could not be opened at start
        self.spool = spool
        self.telemetry = telemetry or _NullTelemetry()
        self.retry_s = float(retry_s)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._background = background  # False: only explicit flush() calls drain the spool (tests, tools)
        self.telemetry.set_spool_depth(self.spool.depth())
        if self.spool.depth():  # left over from a process that died during an outage
            self._start_flusher()

    @property
    def store(self) -> Any:
        """The wrapped store, opened now if it could not be at start (:class:`StoreUnavailable` if
        it still cannot)."""
        if self._store is None:
            if self._opener is None:
                raise StoreUnavailable("no audit store")
            self._store = self._opener()
        return self._store

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.store, name)

    def append(self, record: AuditRecord) -> AuditRecord:
        """Append to the store, or spool when it does not answer (or older records are still
        spooled). Returns the stored record, or ``record`` itself when it was spooled. Raises
        :class:`StoreUnavailable` only when the record was neither stored nor spooled (spool full);
        ``ValueError`` for a duplicate ``audit_id``, as the store does."""
        if self.spool.depth() == 0:
            with self._lock:  # a flush in progress finishes first; then re-check
                if self.spool.depth() == 0:
                    try:
                        return self.store.append(record)
                    except StoreUnavailable as error:
                        logger.warning("audit store unavailable (%s): spooling records to %s", error,
                                       self.spool.directory)
        # behind whatever is spooled already (file names keep arrival order); no lock needed
        spooled = self._put(record)
        if not spooled and self.flush():  # full: make room if the store answers again
            spooled = self._put(record)
        depth = self.spool.depth()
        self.telemetry.set_spool_depth(depth)
        if not spooled:
            self.telemetry.record_spool_drop()
            raise StoreUnavailable(f"the audit store is unavailable and the spool {self.spool.directory} is full "
                                   f"({self.spool.max_records} records): audit {record.audit_id} dropped")
        self._start_flusher()
        self._wake.set()
        return record

    def _put(self, record: AuditRecord) -> bool:
        try:
            return self.spool.put(record)
        except OSError:  # disk full or unwritable: as good as a full spool (counted as a drop)
            logger.exception("cannot write audit %s to the spool %s", record.audit_id, self.spool.directory)
            return False

    def flush(self) -> int:
        """Append spooled records, oldest first, until the spool is empty or the store fails again;
        returns how many left the spool."""
        flushed = 0
        if not self.spool.files():  # (flushed by another process sharing the directory, or never used)
            self.telemetry.set_spool_depth(0)
            return 0
        with self._lock, self.spool.exclusive():
            for path in self.spool.files():
                try:
                    record = AuditRecord.model_validate_json(path.read_text(encoding="utf-8"))
                except FileNotFoundError:  # flushed by another process meanwhile
                    continue
                except ValueError:  # unreadable (edited by hand?): set aside, never block the others
                    logger.error("spooled audit record %s is unreadable; moved to %s.bad", path, path.name)
                    path.replace(path.with_suffix(".bad"))
                    continue
                try:
                    self.store.append(record)
                except StoreUnavailable:
                    break
                except ValueError:  # already in the chain (acknowledgement lost in an earlier try)
                    pass
                path.unlink(missing_ok=True)
                flushed += 1
            depth = self.spool.depth()
        if flushed:
            self.telemetry.record_spool_flush(flushed)
            logger.info("flushed %d spooled audit record(s); %d left", flushed, depth)
        self.telemetry.set_spool_depth(depth)
        return flushed

    def _start_flusher(self) -> None:
        if self._background and (self._thread is None or not self._thread.is_alive()):
            self._thread = threading.Thread(target=self._flush_loop, name="audit-spool-flusher", daemon=True)
            self._thread.start()

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.retry_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - keep retrying; the records stay on disk
                logger.exception("flushing the audit spool failed")
            # keeps running when empty (one directory listing per retry_s): a record spooled just as
            # a flush ended must not wait for the next outage to be flushed

    def close(self) -> None:
        """Stop the flusher (spooled records stay on disk for the next start) and close the store."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._store is not None:
            self._store.close()


def default_spool_dir(store_url: str) -> Path:
    """``<sqlite file>.spool`` beside a SQLite store (an outage there is a full or failing disk);
    ``./audit-spool`` for a server store (mount a volume there in containers)."""
    from .store import sqlite_path_from_url
    from .store_base import StoreError

    try:
        path = sqlite_path_from_url(store_url)
    except StoreError:
        return Path("audit-spool")
    return Path("audit-spool") if path == ":memory:" else Path(path + ".spool")


def open_spooled_store(url: str, *, spool_dir: str | os.PathLike[str] | None = None, max_records: int = 10_000,
                       telemetry: _SpoolTelemetry | None = None, retry_s: float = 2.0,
                       **store_options: Any) -> SpoolingStore:
    """The store the auditor service writes to: ``open_store(url)`` behind an outage spool.

    A server that does not answer at start is not fatal (records spool until it does; a warning is
    logged); a bad URL or a store of a newer schema is: :class:`StoreError`, raised at once."""
    from .store import open_store

    spool = Spool(spool_dir or default_spool_dir(url), max_records)
    try:
        store: Any = open_store(url, **store_options)
    except StoreUnavailable as error:
        logger.warning("AUDITOR_STORE_URL: %s; audit records are spooled to %s until it answers", error,
                       spool.directory)
        store = None
    return SpoolingStore(store, spool, telemetry, retry_s=retry_s, opener=lambda: open_store(url, **store_options))


def open_service_store(url: str, *, spool_dir: str | os.PathLike[str] | None = None, max_records: int = 10_000,
                       telemetry: _SpoolTelemetry | None = None, retry_s: float = 2.0,
                       **store_options: Any) -> SpoolingStore:
    """:func:`open_spooled_store` for a service, which must start even with a wrong store URL: the
    LLM keeps serving. A URL that cannot be used (bad scheme, a store of a newer schema) is logged as
    one error naming ``AUDITOR_STORE_URL``; audits are then kept in the spool, to be flushed into the
    right store after the setting is fixed and the service restarted."""
    from .store_base import StoreError, redact_url

    try:
        return open_spooled_store(url, spool_dir=spool_dir, max_records=max_records, telemetry=telemetry,
                                  retry_s=retry_s, **store_options)
    except StoreError as error:
        spool = Spool(spool_dir or default_spool_dir(url), max_records)
        message = (f"AUDITOR_STORE_URL={redact_url(url)!r} cannot be used: {error}; audit records are kept in "
                   f"{spool.directory} until the setting is fixed and the service restarted")
        logger.error(message)

        def refuse() -> Any:
            raise StoreUnavailable(message)

        return SpoolingStore(None, spool, telemetry, retry_s=max(retry_s, 60.0), opener=refuse)
