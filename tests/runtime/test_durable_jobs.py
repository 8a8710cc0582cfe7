"""auditor.runtime.durable_jobs: forced audits survive a dead auditor and run on a live one, once per
claim, on both backends. Oracles: the jobs the test enqueued and the calls the runner saw."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from auditor.runtime.durable_jobs import DurableJobs, JobPump
from auditor.runtime.jobs import AuditJob
from tests.postgres import fresh_schema

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/audits.sqlite"
    else:
        with fresh_schema() as pg:
            yield pg


def job(i: int) -> AuditJob:
    return AuditJob(request_id=f"forced-{i}", prompt=f"Alice took bicycle {i}", answer="theft")


def wait(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_jobs_run_in_order_and_leave_the_table(url):
    jobs = DurableJobs(url)
    for i in range(3):
        jobs.enqueue(job(i))
    seen: list[str] = []
    pump = JobPump(jobs, lambda j: seen.append(j.request_id), poll_s=0.05).start()
    try:
        wait(lambda: jobs.pending() == 0)
    finally:
        pump.stop()
    assert seen == ["forced-0", "forced-1", "forced-2"] and pump.done == 3


def test_a_job_held_by_a_dead_worker_runs_after_its_lease(url):
    dead = DurableJobs(url, lease_s=0.5)
    dead.enqueue(job(0))
    assert dead.claim("dead-worker")[1].request_id == "forced-0"  # claimed, never completed
    alive = DurableJobs(url, lease_s=60)
    assert alive.claim("alive") is None  # the lease still holds
    time.sleep(0.6)
    job_id, claimed = alive.claim("alive")
    assert claimed.request_id == "forced-0"
    alive.complete(job_id)
    assert alive.pending() == 0


def test_concurrent_workers_never_claim_the_same_job(url):
    jobs = DurableJobs(url)
    for i in range(40):
        jobs.enqueue(job(i))
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    def run(j: AuditJob) -> None:
        with lock:
            runs[j.request_id] += 1
        time.sleep(0.002)

    pumps = [JobPump(DurableJobs(url), run, owner=f"w{k}", poll_s=0.02).start() for k in range(4)]
    try:
        wait(lambda: jobs.pending() == 0, timeout=60)
    finally:
        for p in pumps:
            p.stop()
    assert runs == Counter({f"forced-{i}": 1 for i in range(40)})
    assert sum(p.done for p in pumps) == 40 and sum(p.done > 0 for p in pumps) >= 2


CRASHER = r"""
import sys, time
from auditor.runtime.durable_jobs import DurableJobs
jobs = DurableJobs(sys.argv[1], lease_s=1.0)
job_id, job = jobs.claim("doomed")
print(job.request_id, flush=True)
time.sleep(60)  # "running the audit" when it is killed
"""


def test_kill_9_of_the_auditor_mid_job_loses_no_forced_audit(url):
    jobs = DurableJobs(url)
    jobs.enqueue(job(7))
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, url], stdout=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    try:
        assert proc.stdout.readline().decode().strip() == "forced-7"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    seen: list[str] = []
    pump = JobPump(DurableJobs(url), lambda j: seen.append(j.request_id), poll_s=0.1).start()
    try:
        wait(lambda: jobs.pending() == 0, timeout=30)
    finally:
        pump.stop()
    assert seen == ["forced-7"]
