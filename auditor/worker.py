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
:class:`AuditEngine` for the real one and :class:`Engine` for the interface).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from auditor.cpu_priority import CpuPriority, lower_current_thread
from auditor.records import AuditRecord, utc_now

__all__ = [
    "ChatMessage",
    "PlayerHint",
    "AuditJob",
    "AuditCancelled",
    "AuditStageError",
    "Engine",
    "SubmitResult",
    "AuditWorker",
    "classify_stage",
    "flags_for",
    "FaultInjected",
    "AuditEngine",
]

logger = logging.getLogger("auditor.worker")

STAGES = ("sampling", "handoff", "players", "scoring", "solver", "metrics", "store", "timeout")
PlayerLabel = Literal["relevant", "irrelevant", "forbidden", "unlabelled"]


# ------------------------------------------------------------------------------------------------
# What the LLM service hands over
# ------------------------------------------------------------------------------------------------
class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: str = Field(min_length=1, max_length=64)
    content: str


class PlayerHint(BaseModel):
    """A caller-given player: an exact substring of the prompt (``text``, first occurrence, or the
    ``occurrence``-th) or character offsets ``start``/``end`` (end exclusive), with a label."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, min_length=1, max_length=2000)
    start: int | None = Field(None, ge=0)
    end: int | None = Field(None, ge=0)
    occurrence: int = Field(0, ge=0)
    label: PlayerLabel = "unlabelled"
    group: str | None = Field(None, max_length=128)

    @model_validator(mode="after")
    def _one_way(self) -> PlayerHint:
        has_offsets = self.start is not None or self.end is not None
        if self.text is None and not has_offsets:
            raise ValueError("a player span needs `text` or `start` and `end`")
        if has_offsets:
            if self.start is None or self.end is None:
                raise ValueError("a player span needs both `start` and `end`")
            if self.end <= self.start:
                raise ValueError("a player span needs `end` > `start`")
        return self

    def locate(self, prompt: str) -> tuple[int, int]:
        """Character span of this hint in ``prompt``; ``ValueError`` naming the problem otherwise."""
        if self.start is not None and self.end is not None:
            if self.end > len(prompt):
                raise ValueError(f"span {self.start}:{self.end} is outside the prompt (length {len(prompt)})")
            if self.text is not None and prompt[self.start : self.end] != self.text:
                raise ValueError(f"span {self.start}:{self.end} does not contain {self.text!r}")
            return self.start, self.end
        assert self.text is not None
        pos = -1
        for _ in range(self.occurrence + 1):
            pos = prompt.find(self.text, pos + 1)
            if pos < 0:
                raise ValueError(f"{self.text!r} is not in the prompt" + (
                    f" {self.occurrence + 1} times" if self.occurrence else ""))
        return pos, pos + len(self.text)


class AuditJob(BaseModel):
    """One audit to run: the prompt (or chat messages) and the answer the served model gave."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=256)
    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    answer: str | None = None
    answer_ids: list[int] | None = None
    spans: list[PlayerHint] = Field(default_factory=list)
    sampling_reason: str = "forced"
    sampling_probability: float | None = Field(None, ge=0.0, le=1.0)
    submitted_at: datetime = Field(default_factory=utc_now)

    @model_validator(mode="after")
    def _has_input(self) -> AuditJob:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("an audit needs exactly one of `prompt` and `messages`")
        if self.messages is not None and not self.messages:
            raise ValueError("`messages` must not be empty")
        if self.spans and self.prompt is not None:
            for i, span in enumerate(self.spans):
                try:
                    span.locate(self.prompt)
                except ValueError as e:
                    raise ValueError(f"spans[{i}]: {e}") from None
        return self

    @property
    def labelled(self) -> bool:
        return any(s.label != "unlabelled" for s in self.spans)


# ------------------------------------------------------------------------------------------------
# Errors and the engine interface
# ------------------------------------------------------------------------------------------------
class AuditCancelled(Exception):
    """Raised inside an engine that noticed its cancel event (the budget ran out)."""


class FaultInjected(RuntimeError):
    """The error an engine raises under the ``fault="raise"`` setting (tests only)."""


class AuditStageError(Exception):
    """An engine failure tagged with the pipeline stage it happened in (a label of errors_total)."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage}: {type(error).__name__}: {error}")
        self.stage = stage if stage in STAGES else "scoring"
        self.error = error


_MODULE_STAGES = (
    ("auditor.players", "players"),
    ("auditor.lm", "scoring"),
    ("auditor.solver", "solver"),
    ("auditor.interactions", "solver"),
    ("auditor.transforms", "solver"),
    ("auditor.metrics", "metrics"),
    ("auditor.store", "store"),
    ("auditor.records", "store"),
)


def classify_stage(error: BaseException, default: str = "scoring") -> str:
    """The ``errors_total`` stage of an exception: its explicit tag, else the innermost
    ``auditor.*`` module in its traceback (torch and transformers frames count as scoring)."""
    if isinstance(error, AuditStageError):
        return error.stage
    stage = None
    for frame, _ in traceback.walk_tb(error.__traceback__):
        module = frame.f_globals.get("__name__", "")
        for prefix, name in _MODULE_STAGES:
            if module == prefix or module.startswith(prefix + "."):
                stage = name
    if stage is None and type(error).__name__ == "PlayerError":
        stage = "players"
    return stage or default


def flags_for(metrics: Any, overfitting_threshold: float, misattribution_threshold: float) -> list[str]:
    """Flag reasons of an audit: a score at or above its threshold (a missing score never flags)."""

    def get(name: str) -> float | None:
        value = metrics.get(name) if isinstance(metrics, dict) else getattr(metrics, name, None)
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    flags = []
    overfitting = get("overfitting")
    if overfitting is not None and overfitting == overfitting and overfitting >= overfitting_threshold:
        flags.append("overfitting")
    misattribution = get("misattribution")
    if misattribution is not None and misattribution == misattribution and misattribution >= misattribution_threshold:
        flags.append("misattribution")
    return flags


class Engine(Protocol):
    """What the worker runs. ``run`` returns a success record (not yet stored) or raises;
    ``failure_record`` builds the record of a failed or timed-out audit."""

    def run(self, job: AuditJob, cancel: threading.Event) -> AuditRecord: ...

    def failure_record(
        self,
        job: AuditJob,
        outcome: Literal["failed", "timeout"],
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
    reason: Literal["queued", "queue_full", "stopped"]
    queue_depth: int


@dataclass
class _Pending:
    job: AuditJob
    done: threading.Event
    record: AuditRecord | None = None


# ------------------------------------------------------------------------------------------------
# The worker
# ------------------------------------------------------------------------------------------------
class AuditWorker:
    """Bounded queue + worker thread + per-audit budget around an :class:`Engine`.

    ``fault`` ("none", "raise", "hang") injects failures in front of the engine for tests: "raise"
    fails every audit at the scoring stage; "hang" blocks every audit until its budget runs out.
    ``cpu_priority`` lowers the queue thread, and so every background audit, where the auditor
    shares cores with generation ("idle": only CPU time nothing else wants); on-demand audits
    (:meth:`audit_now`) keep the caller's priority.
    """

    def __init__(
        self,
        engine: Engine,
        store: _Store,
        telemetry: _Telemetry | None = None,
        *,
        queue_size: int = 32,
        timeout_s: float = 300.0,
        fault: Literal["none", "raise", "hang"] = "none",
        max_abandoned: int = 4,
        flag_thresholds: tuple[float, float] = (0.5, 0.3),
        cpu_priority: CpuPriority = "normal",
        nice: int = 10,
        clock: Callable[[], float] = time.monotonic,
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
        self.applied_priority: str | None = None  # what the queue thread got (see auditor.cpu_priority)
        self._clock = clock
        self._queue: queue.Queue[_Pending] = queue.Queue(maxsize=queue_size)
        self._slot = threading.Semaphore(1)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._abandoned: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._busy = False
        self._warm = threading.Event()
        self.processed = 0
        self.dropped = 0

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> AuditWorker:
        if self._thread is None:
            threading.Thread(target=self._warm_up, name="audit-warm-up", daemon=True).start()
            self._thread = threading.Thread(target=self._loop, name="audit-worker", daemon=True)
            self._thread.start()
            self.telemetry.set_queue_depth(0)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop taking jobs; the job in progress gets ``timeout`` seconds to finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

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
        """Queue ``job`` without blocking; a full queue drops it (counted)."""
        if self._stop.is_set() or self._thread is None:
            self.telemetry.record_drop("queue_full")
            self.dropped += 1
            return SubmitResult(False, "stopped", self._queue.qsize())
        try:
            self._queue.put_nowait(_Pending(job, threading.Event()))
        except queue.Full:
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
                pending.record = self._execute(pending.job, self.timeout_s)
            except Exception:  # pragma: no cover - _execute never raises; belt and braces
                logger.exception("audit worker: unexpected error")
            finally:
                pending.done.set()
                self.processed += 1
                self._busy = False

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
        thread.start()
        thread.join(budget_s)
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
        if error is not None:
            stage = classify_stage(error)
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
        flags = flags_for(record.metrics, *self.flag_thresholds)
        if set(flags) != set(record.flags):
            record = record.model_copy(update={"flags": flags})
        return self._finish(record, flags)

    def _failure(self, job: AuditJob, outcome: Literal["failed", "timeout"], message: str,
                 started_at: datetime) -> AuditRecord:
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


# ------------------------------------------------------------------------------------------------
# The real engine: players -> masked scores -> AND-OR interactions -> metrics -> record
# ------------------------------------------------------------------------------------------------
class AuditEngine:
    """Runs one audit with the library (``audit.audit_prompt``, then ``metrics.compute_metrics``)
    and builds its record.

    Failures are tagged with their ``errors_total`` stage (players, scoring, solver from the
    traceback; metrics; store for redaction). Cancellation (the worker's time budget) is checked
    after every masked forward call (the scorer's progress callback) and between steps.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        settings: Any,
        *,
        model_id: str,
        model_revision: str | None = None,
        version: str | None = None,
        redaction_key: bytes | None = None,
    ) -> None:
        from auditor import __version__

        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.model_id = model_id
        self.model_revision = model_revision
        self.version = version or __version__
        self.redaction_key = redaction_key

    def warm_up(self) -> None:
        """Compile the solver's CPU kernel before the first job (about 15 s on a cold cache)."""
        from auditor import dual_simplex

        dual_simplex.warm_up()

    # ---- helpers --------------------------------------------------------------------------------
    @staticmethod
    def _spec(hint: PlayerHint) -> Any:
        from auditor.players import PlayerSpec

        if hint.start is not None and hint.end is not None:
            return PlayerSpec(start=hint.start, end=hint.end, label=hint.label, group=hint.group)
        return PlayerSpec(text=hint.text, occurrence=hint.occurrence, label=hint.label, group=hint.group)

    def _base_record(self, job: AuditJob) -> dict[str, Any]:
        return {
            "request_id": job.request_id,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "auditor_version": self.version,
            "settings": {**self.settings.audit_parameters(), "model_label": self.settings.metrics_model},
            "sampling_reason": job.sampling_reason,
            "sampling_probability": job.sampling_probability,
            "redaction": self.settings.redaction,
        }

    @staticmethod
    def _checkpoint(cancel: threading.Event, where: str) -> None:
        if cancel.is_set():
            raise AuditCancelled(f"time budget exhausted {where}")

    # ---- Engine interface -----------------------------------------------------------------------
    def run(self, job: AuditJob, cancel: threading.Event) -> AuditRecord:
        from auditor.players import PlayerError
        from auditor.records import redact, redact_players

        s = self.settings
        started_at = utc_now()
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            if cancel.is_set():
                raise AuditCancelled("time budget exhausted while scoring")

        try:
            specs = [self._spec(h) for h in job.spans] if job.spans else "auto"
        except (PlayerError, ValueError) as e:
            raise AuditStageError("players", e) from e
        answer: Any = list(job.answer_ids) if job.answer_ids else job.answer
        messages = [m.model_dump() for m in job.messages] if job.messages is not None else None
        try:
            from auditor.audit import audit_prompt

            result = audit_prompt(
                self.model,
                self.tokenizer,
                prompt=job.prompt,
                messages=messages,
                answer=answer,
                players=specs,
                n_players=s.n_players,
                qthres=s.qthres,
                mode=s.mode,
                max_answer_tokens=s.answer_tokens,
                baseline=None if s.baseline == "auto" else s.baseline,
                progress=progress,
            )
        except AuditCancelled:
            raise
        except PlayerError as e:
            raise AuditStageError("players", e) from e
        except Exception as e:  # the stage (players, scoring, solver) from the traceback
            raise AuditStageError(classify_stage(e, "scoring"), e) from e
        game, interactions = result.game, result.interactions
        self._checkpoint(cancel, "after solving")

        labels = [p.label for p in game.players]
        labelled = any(label != "unlabelled" for label in labels)
        try:
            from auditor.metrics import compute_metrics

            metrics = compute_metrics(interactions, labels if labelled else None,
                                      salient_threshold=s.salient_threshold)
            metrics_dict = metrics.model_dump(mode="json") if hasattr(metrics, "model_dump") else dict(metrics)
        except Exception as e:
            raise AuditStageError("metrics", e) from e
        metrics_dict["certificate"] = {
            "objective": interactions.objective,
            "dual_bound": interactions.dual_bound,
            "gap": interactions.gap,
            "iterations": interactions.iterations,
            "solve_seconds": interactions.solve_seconds,
            "tau": interactions.tau,
        }
        metrics_dict["v_full"] = game.raw_full
        metrics_dict["v_empty"] = game.raw_empty
        metrics_dict["baseline"] = game.baseline_kind
        metrics_dict["n_players"] = game.n

        salient = []
        for term in interactions.salient(s.salient_threshold)[:512]:
            d = term.to_dict()
            d["strength"] = abs(float(term.value))
            salient.append(d)
        flags = flags_for(metrics_dict, s.overfitting_threshold, s.misattribution_threshold)
        try:
            prompt_text = redact(game.prompt_text, game.players, s.redaction, key=self.redaction_key)
            answer_text = redact(game.answer_text, (), s.redaction, key=self.redaction_key)
            players = redact_players(game.players, s.redaction, key=self.redaction_key)
        except Exception as e:
            raise AuditStageError("store", e) from e
        cost = game.cost.to_dict()
        cost.update(
            {
                "seconds": time.perf_counter() - t0,
                "states": 1 << game.n,
                "answer_tokens": len(game.answer_ids),
            }
        )
        return AuditRecord(
            **self._base_record(job),
            started_at=started_at,
            finished_at=utc_now(),
            prompt=prompt_text,
            answer=answer_text,
            players=players,
            salient=salient,
            metrics=metrics_dict,
            flags=flags,
            cost=cost,
            outcome="success",
        )

    def failure_record(
        self,
        job: AuditJob,
        outcome: Literal["failed", "timeout"],
        error: str,
        started_at: datetime,
        finished_at: datetime,
    ) -> AuditRecord:
        from auditor.records import redact

        s = self.settings
        try:
            prompt = job.prompt if job.prompt is not None else "\n".join(m.content for m in job.messages or [])
            # no players are known for a failed audit: masked mode keeps no prompt text at all
            kept = redact(prompt, (), s.redaction, key=self.redaction_key) if s.redaction != "masked" else None
            answer = redact(job.answer, (), s.redaction, key=self.redaction_key) if job.answer is not None else None
        except Exception:  # noqa: BLE001 - a failure record must always be buildable
            kept, answer = None, None
        return AuditRecord(
            **self._base_record(job),
            started_at=started_at,
            finished_at=finished_at,
            prompt=kept,
            answer=answer,
            outcome=outcome,
            error=error,
        )
