"""Issue 17: no accepted audit vanishes when the service's process tree is killed or stopped.

The outside tester saw, on SIGTERM, 44 audits accepted and 34 recorded (10 gone without a record,
log line or counter), and on ``kill -9`` about 32 queued audits gone likewise. Here a real
``bentoml serve`` builds a queue (every audit hangs until its 3 s budget: ``AUDITOR_FAULT=hang``), the
whole process group gets SIGKILL, then a restarted server on the same store gets load again and
SIGTERM. After each, the counts must reconcile exactly:

    sampled = recorded + dropped (by reason) + cancelled

``sampled`` and ``dropped`` are read after death from the processes' Prometheus multiprocess files
(they outlive the processes); ``recorded`` and ``cancelled`` from the SQLite store file. Oracles
independent of the code under test: prometheus_client's own collector, sqlite3, the requests sent.
"""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.serving import BentoServer, save_tiny_model

pytestmark = pytest.mark.slow

PROMPT = "The defendant Alice stole a bicycle from the shop and was charged with"
SAMPLED_REASONS = ("forced", "caller_flag", "labelled", "low_confidence", "base_rate")


def _env(model: Path, store: Path) -> dict[str, str]:
    return {"AUDITOR_MODEL": str(model), "AUDITOR_SAMPLE_RATE": "1.0", "AUDITOR_FAULT": "hang",
            "AUDITOR_AUDIT_TIMEOUT_S": "3", "AUDITOR_SHUTDOWN_GRACE_S": "4", "AUDITOR_MAX_NEW_TOKENS": "2",
            "AUDITOR_LOW_CONFIDENCE_THRESHOLD": "none", "AUDITOR_MAX_AUDITS_PER_MINUTE": "none",
            "AUDITOR_QUEUE_SIZE": "8", "AUDITOR_STORE_URL": f"sqlite:///{store}"}


def _post_mortem(server: BentoServer) -> dict[tuple[str, str], float]:
    """Counters of a dead server from its multiprocess files: (metric, reason/outcome) -> value."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(Path(server.env["BENTOML_HOME"]) / "prometheus_multiproc_dir"))
    out: dict[tuple[str, str], float] = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name.startswith("interaction_auditor_") and s.name.endswith("_total"):
                key = (s.name, s.labels.get("reason") or s.labels.get("outcome") or "")
                out[key] = out.get(key, 0.0) + s.value
    return out


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and all its descendants at once (psutil ships with bentoml)."""
    import psutil

    root = psutil.Process(pid)
    tree = [root, *root.children(recursive=True)]
    assert len(tree) >= 3, tree  # arbiter, LLM worker, auditor worker
    for proc in tree:
        proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(tree, timeout=30)


def _wait_tree_gone(procs: list, timeout: float = 60.0) -> None:
    import psutil

    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:  # never leave a worker behind, but say so
        proc.send_signal(signal.SIGKILL)
    assert not alive, f"workers still running {timeout:.0f} s after SIGTERM: {alive}"


def _store_outcomes(store: Path) -> dict[str, int]:
    with sqlite3.connect(store) as conn:
        return dict(conn.execute("SELECT outcome, COUNT(*) FROM audits GROUP BY outcome").fetchall())


def _load(server: BentoServer, n: int) -> None:
    """``n`` answered requests, then wait until every hand-off has an answer from the auditor."""
    with server.client(timeout=60) as c:
        for _ in range(n):
            assert c.post("/generate", json={"prompt": PROMPT}).status_code == 200

    def settled():
        status = httpx.get(server.url + "/auditor/status", timeout=30).json()["worker"]
        handed = status["queue_depth"] + status["busy"] + status["processed"] + status["dropped"]
        return handed >= n and server.metric_value("interaction_auditor_sampling_decisions_total") >= n

    server.wait_for(settled, timeout=60)


def _reconcile(counters: dict[tuple[str, str], float], outcomes: dict[str, int], label: str) -> tuple:
    sampled = sum(counters.get(("interaction_auditor_sampling_decisions_total", r), 0) for r in SAMPLED_REASONS)
    dropped = {r: counters.get(("interaction_auditor_audits_dropped_total", r), 0)
               for r in ("queue_full", "handoff_error", "shutdown")}
    cancelled = outcomes.get("cancelled", 0)
    recorded = sum(outcomes.values()) - cancelled
    print(f"{label}: sampled {sampled:.0f} = recorded {recorded} + dropped {dropped} + cancelled {cancelled}")
    assert sampled == recorded + sum(dropped.values()) + cancelled
    return sampled, recorded, dropped, cancelled


def test_kill_9_then_sigterm_lose_no_accepted_audit_without_a_trace(tmp_path):
    model = save_tiny_model(tmp_path / "tiny-llama")
    store = tmp_path / "audits.sqlite"

    first = BentoServer(_env(model, store))
    first.start()
    try:
        _load(first, 12)  # 1 hangs in the worker, 8 wait in the queue, the rest are dropped (queue_full)
        _kill_tree(first.proc.pid)  # arbiter and workers (each worker has its own process group)
        first.proc.wait(timeout=30)
    finally:
        first.stop()
    before_restart = _store_outcomes(store)
    assert before_restart.get("cancelled", 0) == 0

    second = BentoServer(_env(model, store))  # same store and journal, fresh metrics
    second.start()
    try:
        after_restart = _store_outcomes(store)  # the journal's lost jobs are recorded before ready
        _, _, dropped, cancelled = _reconcile(_post_mortem(first), after_restart, "kill -9")
        assert cancelled >= 5 and dropped["queue_full"] >= 1
        _load(second, 10)
        import psutil

        workers = psutil.Process(second.proc.pid).children(recursive=True)
    finally:
        second.stop()  # SIGTERM to the arbiter's process group: drain 4 s, cancel the rest
    _wait_tree_gone(workers)
    assert second.proc.returncode is not None
    final = _store_outcomes(store)
    second_run = {k: final.get(k, 0) - after_restart.get(k, 0) for k in final}
    _, recorded, _, cancelled = _reconcile(_post_mortem(second), second_run, "SIGTERM")
    assert recorded >= 1 and cancelled >= 1
