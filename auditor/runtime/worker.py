"""The audit worker: a bounded queue, a worker thread, a per-audit time budget.

The auditor service owns one :class:`AuditWorker`. The LLM service hands it :class:`AuditJob`\\ s
(prompt, answer, optional labelled spans) without waiting; :meth:`AuditWorker.submit` never blocks:
a full queue is a drop, counted as ``audits_dropped_total{reason="queue_full"}``.

One thread takes jobs off the queue and runs each in its own short-lived *engine thread* under the
per-audit time budget:

- success: the engine's record is appended to the store and counted (``audits_total{outcome=
  "success"}``, the score histograms, flags);
- an exception: counted in ``errors_total{stage=...}`` and stored as a record with outcome
  ``failed`` and the error message; never propagated;
- over budget: the job's cancel event is set (the engine checks it between steps and stops), the
  engine thread is abandoned, the audit is stored with outcome ``timeout`` and counted in
  ``errors_total{stage="timeout"}``, and the worker moves on to the next job. Threads cannot be
  killed in Python, so an engine that ignores its cancel event keeps running in the background; at
  most ``max_abandoned`` such threads may exist, after which the worker waits for one to end (the
  queue then fills up and further jobs are dropped and counted, so a stuck engine shows on the
  dashboards as drops and timeouts instead of an unbounded pile of threads).

Engine threads run one at a time (a slot shared with synchronous audits from :meth:`audit_now`),
so a background audit and an on-demand audit never compete for the same cores; time spent waiting
for the slot counts against the budget. The engine's one-off warm-up (compiling the solver kernel,
seconds on a cold cache) runs beside the queue when the worker starts; jobs taken meanwhile wait
for it outside their budget.

The worker is mechanics only: what an audit computes is the ``engine``'s business (see
:class:`~auditor.runtime.job_runner.ModelJobRunner` for the real one and :class:`JobRunner` for the
interface).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from auditor.runtime.cpu_priority import CpuPriority, lower_current_thread
from auditor.runtime.failures import (
    AuditCancelled,
    AuditOverBudget,
    AuditSkipped,
    AuditStageError,
    FaultInjected,
    classify_stage,
)
from auditor.runtime.jobs import AuditJob
from auditor.runtime.journal import JobJournal
from auditor.runtime.records import AuditRecord, flags_for, utc_now

__all__ = ["JobRunner", "SubmitResult", "AuditWorker"]

logger = logging.getLogger(__name__)


class JobRunner(Protocol):
    """What the worker runs. ``run`` returns a success record (not yet stored) or raises;
    ``failure_record`` builds the record of a failed or timed-out audit."""

    def run(self, job: AuditJob, cancel: threading.Event) -> AuditRecord: ...

    def failure_record(
        self,
        job: AuditJob,
        outcome: Literal["failed", "timeout", "skipped", "cancelled", "over_budget"],
        error: str,
        started_at: datetime,
        finished_at: datetime,
    ) -> AuditRecord: ...


class _Store(Protocol):
    def append(self, record: AuditRecord) -> Any: ...


class _Telemetry(Protocol):
    def record_drop(self, reason: str) -> None: ...
    def set_queue_depth(self, n: int) -> None: ...
    def record_audit(self, record: AuditRecord, flags: Sequence[str]) -> None: ...
    def record_error(self, stage: str) -> None: ...


class _NullTelemetry:
    def record_drop(self, reason: str) -> None: ...
    def set_queue_depth(self, n: int) -> None: ...
    def record_audit(self, record: AuditRecord, flags: Sequence[str]) -> None: ...
    def record_error(self, stage: str) -> None: ...


@dataclass(frozen=True)
class SubmitResult:
    accepted: bool
    reason: Literal["queued", "queue_full", "stopped", "expired"]
    queue_depth: int


@dataclass
class _Pending:
    job: AuditJob
    done: threading.Event
    record: AuditRecord | None = None
    job_id: str = ""  # the journal's key (request ids are the caller's and need not be unique)


# ------------------------------------------------------------------------------------------------
# The worker
# ------------------------------------------------------------------------------------------------
class AuditWorker:
    """Bounded queue + worker thread + per-audit budget around a :class:`JobRunner`.

    ``fault`` ("none", "raise", "hang") injects failures in front of the engine for tests: "raise"
    fails every audit at the scoring stage; "hang" blocks every audit until its budget runs out.
    ``cpu_priority`` lowers the queue thread, and so every background audit, where the auditor
    shares cores with generation ("idle": only CPU time nothing else wants); on-demand audits
    (:meth:`audit_now`) keep the caller's priority. ``flag_thresholds`` (overfitting,
    misattribution) re-flags each record for runners that do not flag their own; the default (None)
    keeps the runner's flags, so an audit is flagged once, by the runner that knows the settings.
    """

    def __init__(
        self,
        engine: JobRunner,
        store: _Store,
        telemetry: _Telemetry | None = None,
        *,
        queue_size: int = 32,
        timeout_s: float = 300.0,
        fault: Literal["none", "raise", "hang"] = "none",
        max_abandoned: int = 4,
        flag_thresholds: tuple[float, float] | None = None,
        cpu_priority: CpuPriority = "normal",
        nice: int = 10,
        clock: Callable[[], float] = time.monotonic,
        journal: JobJournal | None = None,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if fault not in ("none", "raise", "hang"):
            raise ValueError(f"fault must be none, raise or hang, got {fault!r}")
        if cpu_priority not in ("idle", "nice", "normal"):
            raise ValueError(f"cpu_priority must be idle, nice or normal, got {cpu_priority!r}")
        self.engine = engine
        self.store = store
        self.telemetry = telemetry or _NullTelemetry()
        self.queue_size = queue_size
        self.timeout_s = float(timeout_s)
        self.fault = fault
        self.max_abandoned = max_abandoned
        self.flag_thresholds = flag_thresholds
        self.cpu_priority = cpu_priority
        self.nice = nice
        self.applied_priority: str | None = None  # what the queue thread got (see auditor.runtime.cpu_priority)
        self._clock = clock
        self._queue: queue.Queue[_Pending] = queue.Queue(maxsize=queue_size)
        self._slot = threading.Semaphore(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._abandoned: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._busy = False
        self._warm = threading.Event()
        self.journal = journal  # write-ahead record of accepted jobs (auditor.runtime.journal)
        self._closing = threading.Event()  # shutting down: refuse new jobs, drain the queue
        self._submit_lock = threading.Lock()  # no job slips into the queue after it was emptied
        self._active: set[threading.Event] = set()  # cancel events of running engines
        self.processed = 0
        self.dropped = 0
        self.cancelled = 0

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> AuditWorker:
        if self._thread is None:
            self._recover()
            threading.Thread(target=self._warm_up, name="audit-warm-up", daemon=True).start()
            self._thread = threading.Thread(target=self._loop, name="audit-worker", daemon=True)
            self._thread.start()
            self.telemetry.set_queue_depth(0)
        return self

    def stop(self, timeout: float = 5.0, *, drain_s: float = 0.0) -> int:
        """Shut down without losing a job silently: refuse new jobs, let the queue drain for up to
        ``drain_s`` seconds, then cancel the audit in progress (it gets ``timeout`` seconds to stop)
        and store every job not run as outcome ``cancelled``. Returns how many were cancelled."""
        with self._submit_lock:
            self._closing.set()
        deadline = self._clock() + max(0.0, drain_s)
        while self._thread is not None and self._clock() < deadline and not (self._queue.empty() and not self._busy):
            time.sleep(0.02)
        self._stop.set()
        with self._lock:
            active = list(self._active)
        for cancel in active:
            cancel.set()
        if self._thread is not None:
            self._thread.join(timeout)
        before = self.cancelled
        while True:
            try:
                pending = self._queue.get_nowait()
            except queue.Empty:
                break
            self._cancel(pending, "cancelled: the auditor shut down before this audit's turn")
        self.telemetry.set_queue_depth(0)
        return self.cancelled - before

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def status(self) -> dict[str, Any]:
        return {
            "alive": self.alive,
            "warm": self._warm.is_set(),  # the engine's one-off warm-up has ended
            "queue_depth": self._queue.qsize(),
            "queue_size": self.queue_size,
            "busy": self._busy,
            "processed": self.processed,
            "dropped": self.dropped,
            "abandoned_threads": self._live_abandoned(),
            "timeout_s": self.timeout_s,
            "fault": self.fault,
            "cpu_priority": self.applied_priority,
        }

    # ---- hand-off ---------------------------------------------------------------------------
    def submit(self, job: AuditJob) -> SubmitResult:
        """Queue ``job`` without blocking; a full queue drops it (counted). An accepted job is
        journaled first, so a killed process leaves a trace of it (auditor.runtime.journal)."""
        with self._submit_lock:
            if self._stop.is_set() or self._closing.is_set() or self._thread is None:
                self.telemetry.record_drop("shutdown")
                self.dropped += 1
                return SubmitResult(False, "stopped", self._queue.qsize())
            if job.handoff_deadline is not None and time.time() > job.handoff_deadline:
                # the sender has given up on this hand-off and counts it as failed: not accepted,
                # and not counted here, so the drop is counted exactly once
                return SubmitResult(False, "expired", self._queue.qsize())
            pending = _Pending(job, threading.Event(), job_id=uuid.uuid4().hex)
            self._journal("accepted", pending.job_id, job)
            try:
                self._queue.put_nowait(pending)
            except queue.Full:
                self._journal("finished", pending.job_id)
                self.telemetry.record_drop("queue_full")
                self.dropped += 1
                return SubmitResult(False, "queue_full", self._queue.qsize())
        depth = self._queue.qsize()
        self.telemetry.set_queue_depth(depth)
        return SubmitResult(True, "queued", depth)

    def audit_now(self, job: AuditJob, timeout_s: float | None = None) -> AuditRecord:
        """Run ``job`` now, bypassing the queue, block until it ends and return its stored record
        (outcome ``timeout`` when it ran over ``timeout_s``, default the worker's budget)."""
        if self._thread is not None:
            self._warm.wait()
        return self._execute(job, self.timeout_s if timeout_s is None else float(timeout_s))

    def join(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty and no audit runs (for tests and shutdown)."""
        deadline = self._clock() + timeout
        while self._clock() < deadline:
            if self._queue.empty() and not self._busy:
                return True
            time.sleep(0.01)
        return False

    # ---- internals --------------------------------------------------------------------------
    def _warm_up(self) -> None:
        """One-off start-up cost (compiling the solver kernel) paid beside the queue, so the queue
        keeps its usual shape while it runs and no audit's time budget is charged for it."""
        lower_current_thread(self.cpu_priority, self.nice)
        warm_up = getattr(self.engine, "warm_up", None)
        try:
            if warm_up is not None:
                warm_up()
        except Exception:  # noqa: BLE001 - a failed warm-up only costs the first audit time
            logger.exception("audit worker: warm-up failed")
        finally:
            self._warm.set()

    def _loop(self) -> None:
        # Engine threads started from here inherit this thread's policy; audit_now's do not.
        self.applied_priority = lower_current_thread(self.cpu_priority, self.nice)
        while not self._stop.is_set():
            try:
                pending = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self._busy = True
            try:
                self.telemetry.set_queue_depth(self._queue.qsize())
                while not self._warm.wait(0.1) and not self._stop.is_set():
                    pass
                self._wait_for_abandoned()
                if self._stop.is_set():  # taken just as the worker stopped: never run, so cancelled
                    self._cancel(pending, "cancelled: the auditor shut down before this audit's turn")
                    continue
                pending.record = self._execute(pending.job, self.timeout_s)
                self._journal("finished", pending.job_id)
            except Exception:  # pragma: no cover - _execute never raises; belt and braces
                logger.exception("audit worker: unexpected error")
            finally:
                pending.done.set()
                self.processed += 1
                self._busy = False

    def _journal(self, op: str, job_id: str, job: AuditJob | None = None) -> None:
        """Write to the journal; a failing journal is logged and counted, never blocks an audit."""
        if self.journal is None or not job_id:
            return
        try:
            if op == "accepted":
                self.journal.accepted(job_id, job)
            else:
                self.journal.finished(job_id)
        except Exception:  # noqa: BLE001
            logger.exception("audit worker: job journal write failed")
            self.telemetry.record_error("store")

    def _cancel(self, pending: _Pending, message: str) -> None:
        """Store ``pending`` as ``cancelled`` (a trace of every accepted job that did not run)."""
        pending.record = self._finish(self._failure(pending.job, "cancelled", message, utc_now()), [])
        self._journal("finished", pending.job_id)
        self.cancelled += 1
        pending.done.set()

    def _recover(self) -> None:
        """Jobs a killed process had accepted but not finished: stored as ``cancelled`` at start."""
        if self.journal is None:
            return
        try:
            lost = self.journal.recover()
        except Exception:  # noqa: BLE001
            logger.exception("audit worker: the job journal could not be read")
            self.telemetry.record_error("store")
            return
        for entry in lost:
            kept = entry["job"]
            try:
                job = AuditJob(request_id=kept.get("request_id") or "unknown", prompt="",
                               sampling_reason=kept.get("sampling_reason") or "forced",
                               sampling_probability=kept.get("sampling_probability"),
                               request_id_replaced=bool(kept.get("request_id_replaced")))
            except Exception:  # noqa: BLE001 - a damaged entry still leaves a record
                job = AuditJob(request_id="unknown", prompt="")
            self._cancel(_Pending(job, threading.Event()),
                         "cancelled: accepted, but the auditor process ended before it ran (recovered from the "
                         "job journal)")
        if lost:
            logger.warning("audit worker: %d accepted audits were lost by a previous process; stored as cancelled",
                           len(lost))

    def _live_abandoned(self) -> int:
        with self._lock:
            self._abandoned = [t for t in self._abandoned if t.is_alive()]
            return len(self._abandoned)

    def _wait_for_abandoned(self) -> None:
        while self._live_abandoned() >= self.max_abandoned and not self._stop.is_set():
            time.sleep(0.05)

    def _run_engine(self, job: AuditJob, cancel: threading.Event, box: dict[str, Any]) -> None:
        try:
            while not self._slot.acquire(timeout=0.05):
                if cancel.is_set():
                    box["error"] = AuditCancelled("cancelled while waiting for the engine")
                    return
            try:
                if cancel.is_set():
                    raise AuditCancelled("cancelled before start")
                if self.fault == "raise":
                    raise AuditStageError("scoring", FaultInjected("injected fault (settings.fault=raise)"))
                if self.fault == "hang":
                    cancel.wait()  # hangs until the budget runs out
                    raise AuditCancelled("injected hang (settings.fault=hang)")
                box["record"] = self.engine.run(job, cancel)
            finally:
                self._slot.release()
        except BaseException as error:  # noqa: BLE001 - everything is caught, counted and stored
            box["error"] = error

    def _execute(self, job: AuditJob, budget_s: float) -> AuditRecord:
        started_at = utc_now()
        cancel = threading.Event()
        box: dict[str, Any] = {}
        thread = threading.Thread(
            target=self._run_engine, args=(job, cancel, box), name=f"audit-{job.request_id[:16]}", daemon=True
        )
        with self._lock:
            self._active.add(cancel)
        try:
            thread.start()
            thread.join(budget_s)
        finally:
            with self._lock:
                self._active.discard(cancel)
        if thread.is_alive():
            cancel.set()
            thread.join(0.05)  # a cooperative engine stops at once; do not wait for others
            if thread.is_alive():
                with self._lock:
                    self._abandoned.append(thread)
            self.telemetry.record_error("timeout")
            record = self._failure(
                job, "timeout", f"audit exceeded its time budget of {budget_s:g} s", started_at
            )
            return self._finish(record, [])
        error = box.get("error")
        if isinstance(error, AuditOverBudget):  # the game does not fit a configured limit: no error counted
            logger.info("audit %s over budget: %s", job.request_id, error)
            return self._finish(self._failure(job, "over_budget", str(error), started_at), [])
        if isinstance(error, AuditSkipped):  # the caller's input had nothing to audit: no error counted
            logger.info("audit %s skipped: %s", job.request_id, error)
            return self._finish(self._failure(job, "skipped", str(error), started_at), [])
        if error is not None:
            stage = classify_stage(error)
            if isinstance(error, AuditCancelled) and self._stop.is_set():  # stopped by a shutdown
                message = f"cancelled: the auditor shut down while this audit ran ({error})"
                return self._finish(self._failure(job, "cancelled", message, started_at), [])
            if isinstance(error, AuditCancelled):  # cancelled without hitting the join timeout
                stage, outcome = "timeout", "timeout"
            else:
                outcome = "failed"
            if isinstance(error, AuditStageError):
                message = str(error)
            else:
                message = f"{stage}: {type(error).__name__}: {error}"
            logger.warning("audit %s failed at %s: %s", job.request_id, stage, message)
            self.telemetry.record_error(stage)
            return self._finish(self._failure(job, outcome, message, started_at), [])
        record: AuditRecord = box["record"]
        flags = list(record.flags)
        if self.flag_thresholds is not None:  # re-flag a runner's records with the worker's thresholds
            flags = flags_for(record.metrics, *self.flag_thresholds)
            if set(flags) != set(record.flags):
                record = record.model_copy(update={"flags": flags})
        return self._finish(record, flags)

    def _failure(self, job: AuditJob, outcome: Literal["failed", "timeout", "skipped", "cancelled", "over_budget"],
                 message: str, started_at: datetime) -> AuditRecord:
        try:
            return self.engine.failure_record(job, outcome, message[:2000], started_at, utc_now())
        except Exception as error:  # the engine could not even build a failure record
            logger.exception("audit %s: failure_record failed", job.request_id)
            return AuditRecord(
                request_id=job.request_id,
                started_at=started_at,
                finished_at=utc_now(),
                sampling_reason=job.sampling_reason,
                outcome=outcome,
                error=f"{message[:1500]} (and building the failure record failed: {error})",
            )

    def _finish(self, record: AuditRecord, flags: list[str]) -> AuditRecord:
        try:
            stored = self.store.append(record)
            if isinstance(stored, AuditRecord):
                record = stored
        except Exception as error:  # noqa: BLE001
            logger.exception("audit %s: store append failed", record.request_id)
            self.telemetry.record_error("store")
            record = record.model_copy(
                update={"outcome": "failed", "error": f"store: {type(error).__name__}: {error}"[:2000]}
            )
            flags = []
        try:
            self.telemetry.record_audit(record, flags)
        except Exception:  # noqa: BLE001 - telemetry must never take the worker down
            logger.exception("audit %s: telemetry failed", record.request_id)
        return record
