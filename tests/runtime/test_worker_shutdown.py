"""Issue 17: no accepted audit vanishes, and caller input cannot inflate the auditor's error count.

- graceful stop drains the queue within a grace period and stores what it could not run as
  ``cancelled`` (before: queued jobs were dropped with no record, log line or counter);
- the write-ahead job journal turns jobs a killed process had accepted into ``cancelled`` records
  at the next start (before: a kill -9 lost the whole queue without a trace);
- a prompt with no players is ``skipped``, counted in no error stage (before: ``failed``);
- a hand-off that arrives after its deadline is refused without being counted by the auditor.
Oracles: the records in a list store and the counters of a recording telemetry, compared with the
jobs submitted.
"""

from __future__ import annotations

import threading
import time

from auditor.runtime.failures import AuditSkipped
from auditor.runtime.journal import JobJournal, journal_path_for
from auditor.runtime.jobs import AuditJob
from auditor.runtime.records import AuditRecord
from auditor.runtime.worker import AuditWorker
from runtime.test_worker import FakeEngine, ListStore, RecordingTelemetry, job


class SkippingEngine(FakeEngine):
    def run(self, job: AuditJob, cancel: threading.Event) -> AuditRecord:
        raise AuditSkipped("players: the prompt has no content words to use as players")


def test_a_prompt_without_players_is_skipped_not_failed():
    store, tel = ListStore(), RecordingTelemetry()
    worker = AuditWorker(SkippingEngine(), store, tel, queue_size=4, timeout_s=5.0).start()
    try:
        worker.submit(job(1))
        assert worker.join(10)
    finally:
        worker.stop()
    assert [r.outcome for r in store.records] == ["skipped"]
    assert "no content words" in store.records[0].error
    assert tel.errors == {} and tel.outcomes == {"skipped": 1}


def test_the_real_runner_skips_a_content_free_prompt():
    from tests.tiny_models import build_model, build_tokenizer

    from auditor.runtime.job_runner import ModelJobRunner
    from auditor.runtime.settings import AuditorSettings

    tok = build_tokenizer()
    runner = ModelJobRunner(build_model("llama", tok), tok, AuditorSettings(n_players=3, answer_tokens=2),
                            model_id="tiny")
    store, tel = ListStore(), RecordingTelemetry()
    worker = AuditWorker(runner, store, tel, queue_size=4, timeout_s=60.0).start()
    try:
        for prompt in ("?", "the of and"):
            worker.submit(AuditJob(request_id=f"r-{prompt}", prompt=prompt, answer="x"))
        assert worker.join(60)
    finally:
        worker.stop()
    assert sorted(r.outcome for r in store.records) == ["skipped", "skipped"]
    assert tel.errors == {}


def test_graceful_stop_drains_then_cancels_the_rest_with_a_record_each():
    engine = FakeEngine(0.3)
    store, tel = ListStore(), RecordingTelemetry()
    worker = AuditWorker(engine, store, tel, queue_size=16, timeout_s=5.0).start()
    accepted = sum(worker.submit(job(i)).accepted for i in range(10))
    assert accepted == 10
    t0 = time.monotonic()
    cancelled = worker.stop(timeout=2.0, drain_s=0.8)
    assert time.monotonic() - t0 < 5.0
    outcomes = [r.outcome for r in store.records]
    successes = outcomes.count("success")
    assert successes >= 1 and successes < 10 and cancelled == outcomes.count("cancelled")
    assert len(store.records) == accepted  # every accepted job has exactly one record
    assert sorted(r.request_id for r in store.records) == sorted(f"req-{i}" for i in range(10))
    assert all("shut down" in r.error for r in store.records if r.outcome == "cancelled")
    # refused after stop, and counted as a drop (no silent refusal)
    assert not worker.submit(job(99)).accepted and tel.drops == {"shutdown": 1}


def test_stop_cancels_the_audit_in_progress_as_cancelled():
    store = ListStore()
    # fault="hang" blocks until the cancel event, then raises AuditCancelled like the real runner
    worker = AuditWorker(FakeEngine(), store, RecordingTelemetry(), queue_size=4, timeout_s=30.0, fault="hang").start()
    worker.submit(job(1))
    deadline = time.monotonic() + 10
    while not worker.status()["busy"] and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop(timeout=5.0, drain_s=0.0)
    assert [r.outcome for r in store.records] == ["cancelled"]


def test_journal_recovers_jobs_a_killed_process_had_accepted(tmp_path):
    path = tmp_path / "audits.sqlite.jobs"
    blocked = FakeEngine("block")
    first_store = ListStore()
    first = AuditWorker(blocked, first_store, RecordingTelemetry(), queue_size=8, timeout_s=30.0,
                        journal=JobJournal(path)).start()
    for i in range(5):
        assert first.submit(job(i, request_id_replaced=(i == 3))).accepted
    # "kill -9": the process is gone; nothing more is written by it (its threads are abandoned here)
    time.sleep(0.2)
    first.journal.close()
    first.journal = None

    store, tel = ListStore(), RecordingTelemetry()
    second = AuditWorker(FakeEngine(), store, tel, queue_size=8, timeout_s=5.0, journal=JobJournal(path)).start()
    try:
        assert sorted(r.request_id for r in store.records) == [f"req-{i}" for i in range(5)]
        assert {r.outcome for r in store.records} == {"cancelled"} and tel.outcomes == {"cancelled": 5}
        assert all("process ended" in r.error for r in store.records)
        second.submit(job(7))
        assert second.join(10)
    finally:
        second.stop()
        blocked.release.set()
    # finished jobs leave nothing to recover; the journal holds no prompt text
    assert JobJournal(path).recover() == []
    assert "Alice" not in path.read_text()


def test_journal_ignores_a_torn_line_and_finished_jobs(tmp_path):
    journal = JobJournal(tmp_path / "j")
    journal.accepted("a", job(1))
    journal.accepted("b", job(2, request_id_replaced=True))
    journal.finished("a")
    journal.close()
    with open(tmp_path / "j", "ab") as f:
        f.write(b'{"op":"a","id":"c","jo')  # the crash hit this write: never acknowledged
    pending = JobJournal(tmp_path / "j").recover()
    assert [p["id"] for p in pending] == ["b"] and pending[0]["job"]["request_id"] == "req-2"
    assert pending[0]["job"]["request_id_replaced"] is True  # the cancelled record can note it


def test_journal_path_sits_beside_a_sqlite_store():
    assert str(journal_path_for("sqlite:///x/audits.sqlite")) == "x/audits.sqlite.jobs"
    assert journal_path_for("sqlite:///:memory:") is None
    assert journal_path_for("postgresql://db/audits") is None


def test_an_expired_hand_off_is_refused_and_not_counted_by_the_auditor():
    store, tel = ListStore(), RecordingTelemetry()
    worker = AuditWorker(FakeEngine(), store, tel, queue_size=4, timeout_s=5.0).start()
    try:
        late = worker.submit(job(1, handoff_deadline=time.time() - 0.01))
        on_time = worker.submit(job(2, handoff_deadline=time.time() + 5))
        assert worker.join(10)
    finally:
        worker.stop()
    assert (late.accepted, late.reason) == (False, "expired") and on_time.accepted
    assert tel.drops == {} and [r.request_id for r in store.records] == ["req-2"]
