"""End to end: two real ``bentoml serve`` replicas on one PostgreSQL store keep one audit chain
through a server outage and a kill -9 of a replica; a bad store URL leaves the LLM serving.

Each replica is a whole ``bentoml serve`` (LLM + Auditor processes) with its own port, BentoML home
and spool directory, and the same ``AUDITOR_STORE_URL``: a schema of its own on the test server,
reached through a TCP proxy the test cuts and restores (the shared server itself is never touched).
Oracles: the raw rows' hashes recomputed here (tests/runtime/test_store_fleet.py ``raw_chain_ok``)
and the request ids the clients got answers for. Run with ``pytest -m slow tests/service/test_fleet_e2e.py``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from auditor.runtime.store import open_store
from tests.postgres import CuttableProxy, RawPostgres, fresh_schema, server_url, with_schema
from tests.runtime.test_store_fleet import raw_chain_ok
from tests.serving import BentoServer, save_tiny_model

pytestmark = pytest.mark.slow

FAST = {"AUDITOR_N_PLAYERS": "3", "AUDITOR_ANSWER_TOKENS": "2", "AUDITOR_MAX_NEW_TOKENS": "2",
        "AUDITOR_LOW_CONFIDENCE_THRESHOLD": "none", "AUDITOR_MAX_AUDITS_PER_MINUTE": "none",
        "AUDITOR_SAMPLE_RATE": "1.0", "AUDITOR_SAMPLING_KEY": "fleet-test-key", "AUDITOR_QUEUE_SIZE": "1000"}


def generate(server: BentoServer, i: int, force: bool = False) -> str:
    body = {"prompt": f"Alice took the bicycle number {i} from", "max_new_tokens": 2}
    if force:
        body["audit"] = {"force": True}
    r = httpx.post(server.url + "/generate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["request_id"]


def stored_request_ids(pg_url: str) -> list[str]:
    with open_store(pg_url) as store:
        return [r.request_id for r in store.query(limit=10_000)[0]]


def test_two_replicas_one_chain_through_an_outage_and_a_kill_9(tmp_path):
    model = str(save_tiny_model(tmp_path / "tiny"))
    parts = urlsplit(server_url())
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    with fresh_schema() as pg_url:
        fleet_url = with_schema(proxy.url(server_url()), pg_url.rsplit("search_path%3D", 1)[1])
        replicas = [BentoServer({**FAST, "AUDITOR_MODEL": model, "AUDITOR_STORE_URL": fleet_url,
                                 "AUDITOR_SPOOL_DIR": str(tmp_path / f"spool-{n}")}) for n in "ab"]
        try:
            for server in replicas:
                server.start()
            a, b = replicas
            answered = [generate(s, i) for i in range(3) for s in replicas]
            answered.append(forced := generate(a, 999, force=True))  # a durable job (audit_jobs table)
            a.wait_for(lambda: len(stored_request_ids(pg_url)) >= len(answered), timeout=180)

            proxy.cut()  # the store unreachable while audits flow on both replicas
            answered += [generate(s, 100 + i) for i in range(3) for s in replicas]
            spooled = a.wait_for(lambda: sum(len(list((tmp_path / f"spool-{n}").glob("*.json"))) for n in "ab"),
                                 timeout=180)
            assert spooled > 0
            assert a.metric_value("interaction_auditor_store_spool_depth") > 0 or \
                b.metric_value("interaction_auditor_store_spool_depth") > 0
            proxy.restore()
            a.wait_for(lambda: not list(tmp_path.glob("spool-*/*.json")), timeout=180)

            a.kill_tree()  # replica a dies (arbiter and workers); b carries on
            answered_b = [generate(b, 200 + i) for i in range(3)]
            b.wait_for(lambda: set(answered_b) <= set(stored_request_ids(pg_url)), timeout=180)
        finally:
            for server in replicas:
                server.stop()
            proxy.close()
        stored = stored_request_ids(pg_url)
        assert set(answered) <= set(stored), sorted(set(answered) - set(stored))  # nothing sampled lost
        assert len(stored) == len(set(stored))
        with open_store(pg_url) as store:
            report = store.verify_chain()
        assert report.ok and report.checked == len(stored), report
        assert raw_chain_ok(pg_url) == len(stored)
        with open_store(pg_url) as store:
            assert [r.sampling_reason for r in store.query(limit=10_000)[0] if r.request_id == forced] == ["forced"]
        raw = RawPostgres(pg_url)
        assert raw.execute("SELECT count(*) FROM audit_jobs").fetchone()[0] == 0  # run, then removed
        raw.close()


def test_a_bad_store_url_is_one_clear_error_and_the_llm_still_serves(tmp_path):
    model = str(save_tiny_model(tmp_path / "tiny"))
    with BentoServer({**FAST, "AUDITOR_MODEL": model, "AUDITOR_STORE_URL": "mysql://auditor:pw@db/audits",
                      "AUDITOR_SPOOL_DIR": str(tmp_path / "spool")}) as server:
        generate(server, 1)
        server.wait_for(lambda: list((tmp_path / "spool").glob("*.json")), timeout=120)  # kept, not lost
        log = server.log_tail(200_000)
    errors = [line for line in log.splitlines() if "[ERROR]" in line and "AUDITOR_STORE_URL" in line]
    assert len(errors) == 1 and "cannot be used" in errors[0] and "auditor:pw@" not in log, errors
    assert "Traceback" not in log
