"""End to end: granularity and segments over real HTTP (``bentoml serve``, LLM + Auditor processes).

``/generate`` with retrieved passages as segments is answered, then audited coarse to fine (the
record keeps segment ids, labels, hashes and both levels); bad segments are 400s naming the field
and the segment id before anything is generated; the OpenAI route takes the same object in
``extra_body``; a game over the token budget is recorded ``over_budget`` (422 from ``POST /audit``).
Run with ``pytest -m slow tests/service/test_granularity_e2e.py``.
"""

from __future__ import annotations

import httpx
import pytest

from tests.serving import BentoServer, save_tiny_model

pytestmark = pytest.mark.slow

TOKEN = "e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROMPT = ("The defendant Alice stole a bicycle. She was seen in Zürich!\n\n"
          "Bob paid the shop. The court heard witnesses.\n\nThe charge is")
SEGMENTS = [
    {"id": "doc-1", "text": "The defendant Alice stole a bicycle.", "label": "relevant"},
    {"id": "doc-3", "text": "Bob paid the shop.", "label": "irrelevant"},
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = str(save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama"))
    srv = BentoServer({"AUDITOR_MODEL": model, "AUDITOR_MODEL_LABEL": "tiny-llama", "AUDITOR_N_PLAYERS": "3",
                       "AUDITOR_ANSWER_TOKENS": "2", "AUDITOR_MAX_NEW_TOKENS": "2", "AUDITOR_SAMPLE_RATE": "1.0",
                       "AUDITOR_LOW_CONFIDENCE_THRESHOLD": "none", "AUDITOR_MAX_AUDITS_PER_MINUTE": "none",
                       "AUDITOR_AUTH_TOKEN": TOKEN, "AUDITOR_REDACTION": "hash",
                       # the 2-passage game (186 tokens) fits, the 5-sentence game (612) does not
                       "AUDITOR_MAX_SCORED_TOKENS": "400"})
    srv.start()
    yield srv
    srv.stop()


def _record(server: BentoServer, request_id: str) -> dict:
    def find():
        r = httpx.get(server.url + "/audits", params={"limit": 1000}, headers=AUTH, timeout=30)
        return next((a for a in r.json()["audits"] if a["request_id"] == request_id), None)

    return server.wait_for(find, timeout=120)


def test_generate_with_segments_is_audited_coarse_to_fine(server):
    r = httpx.post(server.url + "/generate", timeout=60, json={
        "prompt": PROMPT, "max_new_tokens": 2, "audit": {"granularity": "segments", "segments": SEGMENTS}})
    assert r.status_code == 200, r.text
    record = _record(server, r.json()["request_id"])
    assert record["outcome"] == "success", record.get("error")
    assert [(p["segment_id"], p["label"]) for p in record["players"]] == [("doc-1", "relevant"),
                                                                            ("doc-3", "irrelevant")]
    assert all(p["text"].startswith("sha256:") and p["text_sha256"].startswith("sha256:") for p in record["players"])
    assert "Bob" not in str(record)  # hash redaction: no passage text anywhere in the record
    assert record["metrics"]["granularity"] == "segments" and "refinement" in record["metrics"]


@pytest.mark.parametrize(("audit", "needle"), [
    ({"segments": [{"id": "doc-9", "text": "not in the prompt"}]}, "doc-9"),
    ({"segments": [{"id": "a", "text": "Alice stole"}, {"id": "b", "text": "stole a bicycle"}]}, "overlap"),
    ({"segments": [{"id": "doc-1", "text": "Alice", "label": "spurious"}]}, "label"),
    ({"granularity": "paragraph"}, "granularity"),
])
def test_bad_segments_are_400_naming_the_field_and_id(server, audit, needle):
    r = httpx.post(server.url + "/generate", json={"prompt": PROMPT, "audit": audit}, timeout=60)
    assert r.status_code == 400, r.text
    assert needle in r.text and ("segments" in r.text or "granularity" in r.text)


def test_openai_extra_body_carries_segments(server):
    body = {"model": "tiny-llama", "max_tokens": 2, "messages": [{"role": "user", "content": PROMPT}],
            "audit": {"segments": [{"id": "doc-9", "text": "absent"}]}}
    bad = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)
    assert bad.status_code == 400 and "doc-9" in bad.text
    body["audit"] = {"granularity": "sentences"}
    ok = httpx.post(server.url + "/v1/chat/completions", json=body, timeout=60)
    assert ok.status_code == 200, ok.text


def test_sync_audit_over_the_token_budget_is_422_over_budget(server):
    r = httpx.post(server.url + "/audit", headers=AUTH, timeout=300, json={
        "prompt": PROMPT, "request_id": "sync-seg", "granularity": "segments", "segments": SEGMENTS})
    assert r.status_code == 200, r.text
    assert r.json()["metrics"]["granularity"] == "segments"
    over = httpx.post(server.url + "/audit", headers=AUTH, timeout=300, json={
        "prompt": PROMPT, "request_id": "sync-big", "granularity": "sentences"})
    assert over.status_code == 422, over.text
    assert over.json()["outcome"] == "over_budget" and "AUDITOR_MAX_SCORED_TOKENS" in over.json()["error"]
    assert server.metric_value("interaction_auditor_audits_total", model="tiny-llama", outcome="over_budget") >= 1
    bad = httpx.post(server.url + "/audit", headers=AUTH, timeout=60, json={
        "prompt": PROMPT, "segments": [{"id": "doc-9", "text": "absent"}]})
    assert bad.status_code == 400 and "doc-9" in bad.text
