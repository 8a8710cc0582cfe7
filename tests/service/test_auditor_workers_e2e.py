"""End to end: one ``bentoml serve`` whose Auditor service runs two worker processes
(``AUDITOR_AUDITOR_WORKERS=2``) on one PostgreSQL store: forced audits are run by both workers and
land in one chain that verifies.

Which worker ran which forced audit is observed in the database, not taken from the service: before
the server starts, the test creates the durable jobs table in its schema with a trigger that notes
every claim (the claiming process's ``owner``, ``host:pid``, and the job's request id) in a table of
the test's own. Oracles: the Auditor worker processes found under the server (psutil), the request
ids the clients got answers for, the raw rows' hashes recomputed (``raw_chain_ok``).
Run with ``pytest -m slow tests/service/test_auditor_workers_e2e.py``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from auditor.runtime.durable_jobs import DurableJobs
from auditor.runtime.store import open_store
from tests.postgres import RawPostgres, fresh_schema
from tests.runtime.test_store_fleet import raw_chain_ok
from tests.serving import BentoServer, save_tiny_model

pytestmark = pytest.mark.slow

FAST = {"AUDITOR_N_PLAYERS": "3", "AUDITOR_ANSWER_TOKENS": "2", "AUDITOR_MAX_NEW_TOKENS": "2",
        "AUDITOR_LOW_CONFIDENCE_THRESHOLD": "none", "AUDITOR_MAX_AUDITS_PER_MINUTE": "none",
        "AUDITOR_SAMPLE_RATE": "0.0", "AUDITOR_SAMPLING_KEY": "workers-test-key", "AUDITOR_QUEUE_SIZE": "1000",
        "AUDITOR_TORCH_THREADS": "1", "AUDITOR_AUDITOR_THREADS": "1"}
FORCED = 12

CLAIM_TRIGGER = [
    "CREATE TABLE job_claims (owner text NOT NULL, request_id text NOT NULL)",
    """CREATE FUNCTION note_claim() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF NEW.state = 'running' THEN
           INSERT INTO job_claims (owner, request_id) VALUES (NEW.owner, (NEW.payload::json)->>'request_id');
         END IF;
         RETURN NEW;
       END $$""",
    "CREATE TRIGGER note_claim AFTER UPDATE ON audit_jobs FOR EACH ROW EXECUTE FUNCTION note_claim()",
]


def auditor_worker_pids(server: BentoServer) -> set[int]:
    """The server's Auditor worker processes (BentoML starts each with ``--service-name Auditor``)."""
    pids = set()
    for proc in server.descendants():
        try:
            cmd = proc.cmdline()
        except Exception:  # noqa: BLE001 - a process that ended meanwhile
            continue
        if "--service-name" in cmd and cmd[cmd.index("--service-name") + 1] == "Auditor" and proc.is_running():
            pids.add(proc.pid)
    return pids


def test_two_auditor_workers_in_one_serve_run_forced_audits_into_one_chain(tmp_path):
    model = str(save_tiny_model(tmp_path / "tiny"))
    with fresh_schema() as pg_url:
        DurableJobs(pg_url)  # the jobs table as the service creates it, so the trigger can watch it
        raw = RawPostgres(pg_url)
        for stmt in CLAIM_TRIGGER:
            raw.execute(stmt)
        server = BentoServer({**FAST, "AUDITOR_MODEL": model, "AUDITOR_STORE_URL": pg_url,
                              "AUDITOR_AUDITOR_WORKERS": "2", "AUDITOR_SPOOL_DIR": str(tmp_path / "spool")})
        try:
            server.start()
            workers = server.wait_for(lambda: (pids := auditor_worker_pids(server)) and len(pids) == 2 and pids,
                                      timeout=60)

            def forced(i: int) -> str:
                body = {"prompt": f"Alice took the bicycle number {i} from", "max_new_tokens": 2,
                        "audit": {"force": True}}
                r = httpx.post(server.url + "/generate", json=body, timeout=120)
                assert r.status_code == 200, r.text
                return r.json()["request_id"]

            with ThreadPoolExecutor(4) as pool:  # a burst: jobs wait in the table for either worker
                answered = list(pool.map(forced, range(FORCED)))

            def stored() -> list[str]:
                with open_store(pg_url) as store:
                    return [r.request_id for r in store.query(limit=10_000)[0]]

            server.wait_for(lambda: set(answered) <= set(stored()), timeout=300, interval=1.0)
            workers_after = auditor_worker_pids(server)
        finally:
            server.stop()
        claims = raw.execute("SELECT owner, request_id FROM job_claims").fetchall()
        jobs_left = raw.execute("SELECT count(*) FROM audit_jobs").fetchone()[0]
        raw.close()

        claimed_by = {int(owner.rsplit(":", 1)[1]) for owner, _ in claims}
        assert workers_after == workers, "an auditor worker restarted during the test"
        assert claimed_by == workers, f"jobs claimed by {claimed_by}, auditor workers {workers}\n{server.log_tail()}"
        assert {rid for _, rid in claims} == set(answered)
        assert jobs_left == 0  # every job run, then removed
        with open_store(pg_url) as store:
            records = store.query(limit=10_000)[0]
            report = store.verify_chain()
        assert sorted(r.request_id for r in records) == sorted(answered)  # each forced audit once, nothing else
        assert all(r.sampling_reason == "forced" for r in records)
        assert report.ok and report.checked == FORCED, report
        assert raw_chain_ok(pg_url) == FORCED
