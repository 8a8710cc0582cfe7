"""The audit worker's mechanics with real threads: queue bound, time budget, exception capture,
store failures, flags. The engine here is a stand-in whose behaviour each test chooses; the real
engine is exercised end to end in tests/service/test_service_e2e.py and in test_worker_engine below."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from datetime import datetime

import pytest

from auditor.runtime.records import AuditRecord, utc_now
from auditor.runtime.failures import AuditStageError, classify_stage
from auditor.runtime.jobs import AuditJob, PlayerHint
from auditor.runtime.records import flags_for
from auditor.runtime.worker import AuditWorker


class ListStore:
    def __init__(self, fail: bool = False) -> None:
        self.records: list[AuditRecord] = []
        self.fail = fail
        self.lock = threading.Lock()

    def append(self, record: AuditRecord) -> AuditRecord:
        if self.fail:
            raise OSError("disk full")
        with self.lock:
            self.records.append(record)
        return record


class RecordingTelemetry:
    def __init__(self) -> None:
        self.drops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self.flags: Counter[str] = Counter()
        self.depths: list[int] = []

    def record_drop(self, reason: str) -> None:
        self.drops[reason] += 1

    def set_queue_depth(self, n: int) -> None:
        self.depths.append(n)

    def record_audit(self, record: AuditRecord, flags) -> None:
        self.outcomes[record.outcome] += 1
        for f in flags:
            self.flags[f] += 1

    def record_error(self, stage: str) -> None:
        self.errors[stage] += 1


class FakeEngine:
    """behaviour: "ok", "raise", "block" (ignores cancel until released), "cooperative" (stops on
    cancel), or a float (sleep that long, then succeed)."""

    def __init__(self, behaviour="ok", metrics=None) -> None:
        self.behaviour = behaviour
        self.metrics = metrics or {"overfitting": 0.1, "misattribution": None}
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls = 0

    def run(self, job: AuditJob, cancel: threading.Event) -> AuditRecord:
        self.calls += 1
        self.started.set()
        b = self.behaviour
        if b == "raise":
            raise AuditStageError("solver", ValueError("LP infeasible"))
        if b == "raise-untagged":
            raise KeyError("boom")
        if b == "block":
            self.release.wait(30)
        elif b == "cooperative":
            cancel.wait(30)
        elif isinstance(b, float):
            time.sleep(b)
        return AuditRecord(request_id=job.request_id, metrics=self.metrics, sampling_reason=job.sampling_reason)

    def failure_record(self, job, outcome, error, started_at: datetime, finished_at: datetime) -> AuditRecord:
        return AuditRecord(request_id=job.request_id, outcome=outcome, error=error,
                           started_at=started_at, finished_at=finished_at)


def make(engine, *, store=None, queue_size=4, timeout_s=5.0, fault="none", **kw):
    store = store if store is not None else ListStore()
    tel = RecordingTelemetry()
    worker = AuditWorker(engine, store, tel, queue_size=queue_size, timeout_s=timeout_s, fault=fault, **kw).start()
    return worker, store, tel


def job(i: int = 0, **kw) -> AuditJob:
    return AuditJob(request_id=f"req-{i}", prompt="The defendant Alice stole a bicycle.", answer="theft", **kw)


def test_success_is_stored_and_counted():
    worker, store, tel = make(FakeEngine())
    try:
        assert worker.submit(job()).accepted
        assert worker.join(5)
        assert [r.outcome for r in store.records] == ["success"]
        assert tel.outcomes == {"success": 1} and not tel.errors and not tel.drops
    finally:
        worker.stop()


def test_exception_is_captured_with_its_stage_and_stored_as_failed():
    worker, store, tel = make(FakeEngine("raise"))
    try:
        worker.submit(job(1))
        worker.submit(job(2))
        assert worker.join(5)
        assert [r.outcome for r in store.records] == ["failed", "failed"]
        assert "LP infeasible" in store.records[0].error and store.records[0].error.startswith("solver")
        assert tel.errors == {"solver": 2} and tel.outcomes == {"failed": 2}
        assert worker.alive  # the worker survives
    finally:
        worker.stop()


def test_untagged_exception_defaults_to_scoring_stage():
    worker, store, tel = make(FakeEngine("raise-untagged"))
    try:
        worker.submit(job())
        assert worker.join(5)
        assert tel.errors == {"scoring": 1}
        assert "KeyError" in store.records[0].error
    finally:
        worker.stop()


@pytest.mark.parametrize("behaviour", ["cooperative", "block"])
def test_timeout_is_recorded_and_the_worker_moves_on(behaviour):
    engine = FakeEngine(behaviour)
    worker, store, tel = make(engine, timeout_s=0.3)
    try:
        t0 = time.monotonic()
        worker.submit(job(1))
        assert engine.started.wait(5)
        # the worker gives up after the budget, even when the engine never returns
        assert worker.join(10)
        elapsed = time.monotonic() - t0
        assert store.records[0].outcome == "timeout" and "time budget" in store.records[0].error
        assert tel.errors["timeout"] == 1 and tel.outcomes["timeout"] == 1
        assert 0.25 < elapsed < 5
        if behaviour == "block":
            assert worker.status()["abandoned_threads"] == 1
        else:
            assert worker.status()["abandoned_threads"] == 0
        # the worker still works once the engine behaves
        engine.behaviour = "ok"
        engine.release.set()
        worker.submit(job(2))
        assert worker.join(5)
        assert store.records[-1].outcome == "success"
    finally:
        engine.release.set()
        worker.stop()


def test_full_queue_drops_and_counts_without_blocking():
    engine = FakeEngine("block")
    worker, store, tel = make(engine, queue_size=1, timeout_s=30)
    try:
        assert worker.submit(job(0)).accepted
        assert engine.started.wait(5)  # job 0 is running: the queue is empty again
        assert worker.submit(job(1)).accepted  # fills the queue
        t0 = time.monotonic()
        results = [worker.submit(job(i)) for i in range(2, 6)]
        assert time.monotonic() - t0 < 0.5  # never blocks
        assert [r.reason for r in results] == ["queue_full"] * 4
        assert tel.drops == {"queue_full": 4}
        assert max(tel.depths) == 1
    finally:
        engine.release.set()
        worker.stop()


def test_fault_injection_raise_and_hang():
    worker, store, tel = make(FakeEngine(), fault="raise")
    try:
        worker.submit(job())
        assert worker.join(5)
        assert store.records[0].outcome == "failed" and "injected fault" in store.records[0].error
        assert tel.errors == {"scoring": 1}
    finally:
        worker.stop()
    worker, store, tel = make(FakeEngine(), fault="hang", timeout_s=0.2)
    try:
        worker.submit(job())
        assert worker.join(5)
        assert store.records[0].outcome == "timeout"
        assert worker.status()["abandoned_threads"] == 0  # the injected hang honours cancellation
    finally:
        worker.stop()


def test_store_failure_is_counted_not_raised():
    worker, store, tel = make(FakeEngine(), store=ListStore(fail=True))
    try:
        worker.submit(job())
        assert worker.join(5)
        assert tel.errors == {"store": 1} and tel.outcomes == {"failed": 1}
        assert worker.alive
    finally:
        worker.stop()


def test_flags_follow_thresholds():
    engine = FakeEngine(metrics={"overfitting": 0.6, "misattribution": 0.2})
    worker, store, tel = make(engine, flag_thresholds=(0.5, 0.3))
    try:
        worker.submit(job())
        assert worker.join(5)
        assert store.records[0].flags == ["overfitting"] and tel.flags == {"overfitting": 1}
    finally:
        worker.stop()
    assert flags_for({"overfitting": 0.0, "misattribution": 0.0}, 0.0, 0.0) == ["overfitting", "misattribution"]
    assert flags_for({"overfitting": 0.0, "misattribution": None}, 0.0, 0.0) == ["overfitting"]
    assert flags_for({"overfitting": float("nan")}, 0.0, 0.0) == []


def test_audit_now_runs_synchronously_with_its_own_budget():
    engine = FakeEngine(0.05)
    worker, store, tel = make(engine)
    try:
        record = worker.audit_now(job(7))
        assert record.outcome == "success" and record.request_id == "req-7"
        engine.behaviour = "cooperative"
        t0 = time.monotonic()
        record = worker.audit_now(job(8), timeout_s=0.2)
        assert record.outcome == "timeout" and time.monotonic() - t0 < 2
    finally:
        worker.stop()


def test_audits_run_one_at_a_time():
    active, peak = [0], [0]
    lock = threading.Lock()

    class Counting(FakeEngine):
        def run(self, job, cancel):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with lock:
                active[0] -= 1
            return super().run(job, cancel)

    worker, store, tel = make(Counting(), queue_size=8)
    try:
        threads = [threading.Thread(target=worker.audit_now, args=(job(100 + i),)) for i in range(3)]
        for i in range(3):
            worker.submit(job(i))
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert worker.join(10)
        assert len(store.records) == 6 and peak[0] == 1
    finally:
        worker.stop()


@pytest.mark.skipif(not hasattr(os, "SCHED_IDLE"), reason="SCHED_IDLE is Linux-only; CI runs on Linux")
def test_background_audits_run_idle_and_on_demand_audits_do_not():
    """The kernel's own view of each engine thread's policy, read from inside the engine."""

    class Policy(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            self.policies: dict[str, int] = {}

        def run(self, job, cancel):
            self.policies[job.request_id] = os.sched_getscheduler(0)
            return super().run(job, cancel)

    engine = Policy()
    worker, store, tel = make(engine, cpu_priority="idle")
    try:
        assert worker.submit(job(1)).accepted and worker.join(10)
        worker.audit_now(job(2))
        assert engine.policies == {"req-1": os.SCHED_IDLE, "req-2": os.sched_getscheduler(0)}
        assert os.sched_getscheduler(0) != os.SCHED_IDLE and worker.status()["cpu_priority"] == "idle"
    finally:
        worker.stop()


def test_nice_priority_lowers_only_the_worker_thread():
    seen: dict[str, int] = {}

    class Nice(FakeEngine):
        def run(self, job, cancel):
            seen[job.request_id] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            return super().run(job, cancel)

    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    worker, store, tel = make(Nice(), cpu_priority="nice", nice=min(19, own + 7))
    try:
        assert worker.submit(job(1)).accepted and worker.join(10)
        worker.audit_now(job(2))
        assert seen == {"req-1": min(19, own + 7), "req-2": own}
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
    finally:
        worker.stop()


def test_status_says_when_the_warm_up_has_ended():
    class Slow(FakeEngine):
        def __init__(self) -> None:
            super().__init__()
            self.go = threading.Event()

        def warm_up(self) -> None:
            self.go.wait(10)

    engine = Slow()
    worker, store, tel = make(engine)
    try:
        assert worker.status()["warm"] is False
        engine.go.set()
        deadline = time.monotonic() + 5
        while not worker.status()["warm"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.status()["warm"] is True
    finally:
        worker.stop()


def test_unknown_cpu_priority_is_refused():
    with pytest.raises(ValueError, match="cpu_priority"):
        AuditWorker(FakeEngine(), ListStore(), cpu_priority="realtime")


def test_stopped_worker_refuses():
    worker, store, tel = make(FakeEngine())
    worker.stop()
    result = worker.submit(job())
    assert not result.accepted and result.reason == "stopped"


def test_job_validation_names_fields():
    with pytest.raises(ValueError, match="exactly one of `prompt` and `messages`"):
        AuditJob(request_id="x", answer="a")
    with pytest.raises(ValueError, match=r"spans\[0\]: 'Bob' is not in the prompt"):
        AuditJob(request_id="x", prompt="Alice stole", spans=[PlayerHint(text="Bob")])
    with pytest.raises(ValueError, match="outside the prompt"):
        AuditJob(request_id="x", prompt="Alice", spans=[PlayerHint(start=2, end=9)])
    with pytest.raises(ValueError, match="both `start` and `end`"):
        PlayerHint(start=2)
    hint = PlayerHint(text="a", occurrence=1, label="forbidden")
    assert hint.locate("banana") == (3, 4)
    assert AuditJob(request_id="x", prompt="p", spans=[hint.model_copy(update={"occurrence": 0, "text": "p"})]).labelled


def test_classify_stage_from_traceback():
    def players_like():
        raise ValueError("no players")

    try:  # defined in a test module: no auditor module in the traceback
        players_like()
    except ValueError as e:
        assert classify_stage(e) == "scoring"
    assert classify_stage(AuditStageError("metrics", ValueError())) == "metrics"

    class PlayerError(ValueError):
        pass

    assert classify_stage(PlayerError("x")) == "players"
    assert isinstance(utc_now(), datetime)


# ------------------------------------------------------------------------------------------------
# The real engine on a tiny random-init model (fast): records, redaction, stages, cancellation
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny():
    from tests.tiny_models import build_model, build_tokenizer

    tok = build_tokenizer()
    return build_model("llama", tok), tok


def _engine(tiny, **overrides):
    from auditor.runtime.settings import AuditorSettings
    from auditor.runtime.job_runner import ModelJobRunner

    settings = AuditorSettings(n_players=4, answer_tokens=3, **overrides)
    model, tok = tiny
    return ModelJobRunner(model, tok, settings, model_id="tiny", model_revision="abc")


def test_engine_success_record(tiny):
    pytest.importorskip("auditor.metrics.audit_metrics")
    engine = _engine(tiny, overfitting_threshold=0.0, misattribution_threshold=0.0)
    spans = [PlayerHint(text="Alice", label="forbidden"), PlayerHint(text="bicycle", label="relevant"),
             PlayerHint(text="shop")]
    job = AuditJob(request_id="r1", prompt="The defendant Alice stole a bicycle from the shop", spans=spans)
    record = engine.run(job, threading.Event())
    assert record.outcome == "success" and record.request_id == "r1" and record.model_revision == "abc"
    assert [p["label"] for p in record.players] == ["forbidden", "relevant", "unlabelled"]
    assert "Alice" not in record.prompt and "[p0:forbidden]" in record.prompt  # masked by default
    assert set(record.flags) == {"overfitting", "misattribution"}
    assert record.cost["states"] == 8 and record.metrics["certificate"]["gap"] is not None
    assert record.settings["n_players"] == 4 and record.salient


def test_engine_stages_and_cancellation(tiny):
    pytest.importorskip("auditor.metrics.audit_metrics")
    engine = _engine(tiny)
    worker = AuditWorker(engine, ListStore(), RecordingTelemetry(), timeout_s=60).start()
    try:
        # players stage: a chat request whose span is not in any user message
        job = AuditJob(request_id="r2", messages=[{"role": "user", "content": "Alice stole a bicycle"}],
                       spans=[PlayerHint(text="Bob")])
        record = worker.audit_now(job)
        assert record.outcome == "failed" and record.error.startswith("players")
        assert worker.telemetry.errors == {"players": 1}
    finally:
        worker.stop()
    cancel = threading.Event()
    cancel.set()
    from auditor.runtime.failures import AuditCancelled

    with pytest.raises(AuditCancelled):
        engine.run(AuditJob(request_id="r3", prompt="The defendant Alice stole a bicycle"), cancel)
    failed = engine.failure_record(AuditJob(request_id="r4", prompt="secret words", answer="x"), "timeout", "t",
                                   utc_now(), utc_now())
    assert failed.outcome == "timeout" and failed.prompt is None  # masked mode keeps no unplaced text
