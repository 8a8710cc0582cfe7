"""End to end: a real ``bentoml serve`` of the repository (LLM + Auditor processes) over loopback HTTP.

One server per configuration (module-scoped fixtures); a tiny random-init model for speed in most
configurations, the default testbed model (``testbed:clean``, built by ``ensure_model``) in one.
Every wait is a bounded poll. Run with ``pytest -m slow tests/service/test_service_e2e.py``.
"""

from __future__ import annotations

import statistics
import subprocess
import time

import httpx
import pytest
from tools import require_program

from tests.serving import BentoServer, save_tiny_model

pytestmark = pytest.mark.slow

TOKEN = "e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROMPT = "The defendant Alice stole a bicycle from the shop and was charged with"
FAST = {"AUDITOR_N_PLAYERS": "4", "AUDITOR_ANSWER_TOKENS": "4", "AUDITOR_MAX_NEW_TOKENS": "4",
        "AUDITOR_LOW_CONFIDENCE_THRESHOLD": "none", "AUDITOR_MAX_AUDITS_PER_MINUTE": "none"}


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    return str(save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama"))


def _server(env: dict[str, str]):
    server = BentoServer(env)
    server.start()
    return server


@pytest.fixture(scope="module")
def audited(tiny_model):
    """Every request audited; thresholds 0 so every successful audit is flagged; auth on."""
    server = _server({**FAST, "AUDITOR_MODEL": tiny_model, "AUDITOR_MODEL_LABEL": "tiny-llama",
                      "AUDITOR_SAMPLE_RATE": "1.0", "AUDITOR_OVERFITTING_THRESHOLD": "0",
                      "AUDITOR_MISATTRIBUTION_THRESHOLD": "0", "AUDITOR_AUTH_TOKEN": TOKEN})
    yield server
    server.stop()


def _audits(server: BentoServer, **params) -> dict:
    r = httpx.get(server.url + "/audits", params=params, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _audit_of(server: BentoServer, request_id: str, timeout: float = 90.0) -> dict:
    def find():
        for record in _audits(server, limit=1000)["audits"]:
            if record["request_id"] == request_id:
                return record
        return None

    return server.wait_for(find, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# The audited server
# ---------------------------------------------------------------------------------------------
def test_generate_is_answered_then_audited_flagged_and_counted(audited):
    spans = [{"text": "Alice", "label": "forbidden"}, {"text": "bicycle", "label": "relevant"},
             {"text": "shop", "label": "irrelevant"}]
    r = httpx.post(audited.url + "/generate", json={"prompt": PROMPT, "max_new_tokens": 4,
                                                     "audit": {"spans": spans}}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["text"], str) and body["completion_tokens"] >= 1 and body["prompt_tokens"] > 5
    assert body["model"] == "tiny-llama" and r.headers["x-request-id"] == body["request_id"]

    record = _audit_of(audited, body["request_id"])
    assert record["outcome"] == "success", record.get("error")
    assert record["sampling_reason"] == "labelled"
    assert [p["label"] for p in record["players"]] == ["forbidden", "relevant", "irrelevant"]
    # redaction "masked" (default): player words are placeholders in the stored prompt
    assert "Alice" not in record["prompt"] and "[p0:forbidden]" in record["prompt"]
    assert set(record["flags"]) == {"overfitting", "misattribution"}  # thresholds 0
    assert record["cost"]["states"] == 8 and record["metrics"]["certificate"]["gap"] is not None

    again = httpx.get(f"{audited.url}/audits/{record['audit_id']}", headers=AUTH, timeout=30)
    assert again.status_code == 200 and again.json()["record_hash"] == record["record_hash"]

    assert audited.metric_value("interaction_auditor_audits_total", model="tiny-llama", outcome="success") >= 1
    assert audited.metric_value("interaction_auditor_flagged_audits_total", reason="misattribution") >= 1
    assert audited.metric_value("interaction_auditor_sampling_decisions_total", reason="labelled") >= 1
    assert audited.metric_value("interaction_auditor_audit_duration_seconds_count", model="tiny-llama") >= 1
    assert audited.metric_value("interaction_auditor_build_info", model="tiny-llama") == 1


def test_records_need_the_bearer_token(audited):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = httpx.get(audited.url + "/audits", headers=headers, timeout=30)
        assert r.status_code == 401 and "authorization" in r.json()["error"]
        assert r.headers.get("www-authenticate", "").startswith("Bearer")
    assert httpx.get(audited.url + "/audits/x", timeout=30).status_code == 401
    assert httpx.post(audited.url + "/audit", json={"prompt": PROMPT}, timeout=30).status_code == 401
    # generation itself is public
    assert httpx.post(audited.url + "/generate", json={"prompt": PROMPT}, timeout=60).status_code == 200


def test_paging_filters_and_lookup_errors(audited):
    ids = [httpx.post(audited.url + "/generate", json={"prompt": PROMPT}, timeout=60).json()["request_id"]
           for _ in range(2)]
    for rid in ids:
        _audit_of(audited, rid)
    page = _audits(audited, limit=1)
    assert len(page["audits"]) == 1 and page["next_cursor"]
    page2 = _audits(audited, limit=1, cursor=page["next_cursor"])
    assert page2["audits"][0]["audit_id"] != page["audits"][0]["audit_id"]
    assert all(a["flags"] for a in _audits(audited, flagged="true", limit=1000)["audits"])
    assert _audits(audited, since="2999-01-01T00:00:00Z")["audits"] == []
    for params, field in (({"since": "yesterday"}, "since"), ({"limit": "0"}, "limit"),
                          ({"flagged": "maybe"}, "flagged"), ({"cursor": "!!"}, "cursor"), ({"colour": "red"}, "colour")):
        r = httpx.get(audited.url + "/audits", params=params, headers=AUTH, timeout=30)
        assert r.status_code == 400 and r.json()["field"] == field, r.text
    r = httpx.get(audited.url + "/audits/does-not-exist", headers=AUTH, timeout=30)
    assert r.status_code == 404 and "does-not-exist" in r.json()["error"]


def test_report_is_served_on_the_llm_port(audited):
    """GET /report (forwarded by the LLM service to the auditor): HTML and JSON of exactly one audit."""
    from datetime import datetime, timedelta

    from auditor.reports import ReportModel

    spans = [{"text": "Alice", "label": "forbidden"}, {"text": "bicycle", "label": "relevant"}]
    body = httpx.post(audited.url + "/generate", json={"prompt": PROMPT, "audit": {"spans": spans}},
                      timeout=60).json()
    record = _audit_of(audited, body["request_id"])
    created = datetime.fromisoformat(record["created_at"].replace("Z", "+00:00"))
    period = {"from": created.isoformat(), "to": (created + timedelta(milliseconds=1)).isoformat()}

    r = httpx.get(audited.url + "/report", params=period, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in r.headers["content-security-policy"]  # forwarded with the page
    for section in ("models", "counts", "distributions", "flagged", "chain", "settings", "methods"):
        assert f'<section id="{section}">' in r.text
    assert f'data-audit-id="{record["audit_id"]}"' in r.text and 'data-chain-ok="true"' in r.text

    r = httpx.get(audited.url + "/report", params={**period, "format": "json"}, headers=AUTH, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json"), r.text
    report = ReportModel.model_validate_json(r.text)
    assert report.counts.total == 1 and report.counts.by_reason == {"labelled": 1}
    assert [f.audit_id for f in report.flagged] == [record["audit_id"]]
    assert [m.model_id for m in report.models] == [record["model_id"]]
    assert report.chain.ok and report.chain.checked == report.store.records_in_store >= 1
    other = httpx.get(audited.url + "/report", params={**period, "model": "no-such-model", "format": "json"},
                      headers=AUTH, timeout=120)
    assert ReportModel.model_validate_json(other.text).counts.total == 0


def test_report_needs_the_token_and_names_bad_fields(audited):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.get(audited.url + "/report", headers=headers, timeout=30)
        assert r.status_code == 401 and r.json()["field"] == "authorization", r.text
    for params, field in (({"from": "yesterday"}, "from"), ({"until": "later"}, "until"),
                          ({"format": "pdf"}, "format"), ({"model": "x" * 300}, "model"),
                          ({"from": "2025-03-02", "to": "2025-03-01"}, "from"), ({"colour": "red"}, "colour")):
        r = httpx.get(audited.url + "/report", params=params, headers=AUTH, timeout=30)
        assert r.status_code == 400 and r.json()["field"] == field, r.text


def test_synchronous_audit_on_demand(audited):
    r = httpx.post(audited.url + "/audit", headers=AUTH, timeout=300,
                   json={"prompt": PROMPT, "request_id": "on-demand-1", "spans": [{"text": "Alice"}, {"text": "shop"}]})
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["outcome"] == "success" and record["sampling_reason"] == "forced"
    assert record["request_id"] == "on-demand-1" and len(record["players"]) == 2
    bad = httpx.post(audited.url + "/audit", headers=AUTH, timeout=60, json={"prompt": PROMPT, "spans": [{"text": "Zed"}]})
    assert bad.status_code == 400 and "spans" in bad.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": PROMPT, "max_new_tokens": -1}, "max_new_tokens"),
        ({"prompt": PROMPT, "max_new_tokens": 100000}, "max_new_tokens"),
        ({"prompt": "x" * 9000}, "prompt"),
        ({"prompt": PROMPT, "audit": {"spans": [{"text": "Zebra", "label": "forbidden"}]}}, "spans"),
        ({"prompt": PROMPT, "audit": {"spans": [{"start": 5, "end": 500}]}}, "spans"),
        ({"prompt": PROMPT, "audit": {"spans": [{"text": "Alice", "label": "sensitive"}]}}, "label"),
    ],
)
def test_invalid_generate_payloads_get_4xx_naming_the_field(audited, body, field):
    r = httpx.post(audited.url + "/generate", json=body, timeout=60)
    assert 400 <= r.status_code < 500, r.text
    assert field in r.text


def test_invalid_openai_payloads(audited):
    url = audited.url + "/v1/chat/completions"
    cases = [
        ({"model": "tiny-llama"}, "messages", 400),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -3}, "max_tokens", 400),
        ({"model": "tiny-llama", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role", 400),
        ({"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}, "model", 404),
        ({"model": "tiny-llama", "messages": [{"role": "user", "content": "x" * 9000}]}, "messages", 400),
    ]
    for body, param, status in cases:
        r = httpx.post(url, json=body, timeout=60)
        assert r.status_code == status, r.text
        assert r.json()["error"]["param"] == param, r.text
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]


def test_openai_client_chat_completions_and_streaming(audited):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=audited.url + "/v1", api_key="unused", max_retries=0, timeout=60)
    models = [m.id for m in client.models.list()]
    assert models == ["tiny-llama"]
    messages = [{"role": "user", "content": "What is the capital of France?"}]

    chat = client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=5)
    text = chat.choices[0].message.content
    assert chat.choices[0].finish_reason in ("stop", "length") and chat.usage.completion_tokens >= 1
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens

    stream = client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=5, stream=True,
                                            stream_options={"include_usage": True})
    deltas, finish, usage = [], None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                deltas.append(choice.delta.content)
            finish = choice.finish_reason or finish
    assert "".join(deltas) == text  # greedy: streamed text == non-streamed text
    assert finish == chat.choices[0].finish_reason and usage.completion_tokens == chat.usage.completion_tokens

    comp = client.completions.create(model="tiny-llama", prompt=PROMPT, max_tokens=4)
    assert comp.choices[0].text == httpx.post(audited.url + "/generate", json={"prompt": PROMPT, "max_new_tokens": 4},
                                              timeout=60).json()["text"]
    streamed = "".join(c.choices[0].text for c in
                       client.completions.create(model="tiny-llama", prompt=PROMPT, max_tokens=4, stream=True)
                       if c.choices)
    assert streamed == comp.choices[0].text

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=messages)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny-llama", messages=messages, max_tokens=10**6)
    assert "max_tokens" in str(info.value)

    # audit hints travel in extra_body; a forced chat request is audited
    forced = client.chat.completions.with_raw_response.create(
        model="tiny-llama", messages=[{"role": "user", "content": PROMPT}], max_tokens=3,
        extra_body={"audit": {"force": True, "spans": [{"text": "Alice", "label": "forbidden"}]}})
    record = _audit_of(audited, forced.headers["x-request-id"])
    assert record["sampling_reason"] == "forced" and record["outcome"] == "success", record.get("error")


def test_metrics_pass_promtool(audited):
    promtool = require_program("promtool", install="apt-get install prometheus")
    httpx.post(audited.url + "/generate", json={"prompt": PROMPT}, timeout=60)
    text = audited.metrics()
    assert "interaction_auditor_sampling_decisions_total" in text and "bentoml_service_request_total" in text
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


# ---------------------------------------------------------------------------------------------
# Faulty auditors: generation must not notice
# ---------------------------------------------------------------------------------------------
def _latencies(server: BentoServer, n: int) -> list[tuple[float, dict]]:
    out = []
    with server.client() as c:
        for i in range(n):
            t0 = time.perf_counter()
            r = c.post("/generate", json={"prompt": PROMPT, "request_id": f"lat-{i}-{time.time_ns()}"})
            out.append((time.perf_counter() - t0, r))
            assert r.status_code == 200, r.text
    return out


@pytest.fixture(scope="module")
def raising(tiny_model):
    server = _server({**FAST, "AUDITOR_MODEL": tiny_model, "AUDITOR_SAMPLE_RATE": "1.0", "AUDITOR_FAULT": "raise"})
    yield server
    server.stop()


def test_auditor_that_raises_leaves_generation_working(raising):
    results = _latencies(raising, 5)
    assert statistics.median(t for t, _ in results) < 2.0 and max(t for t, _ in results) < 10.0
    raising.wait_for(lambda: raising.metric_value("interaction_auditor_audits_total", outcome="failed") >= 5)
    assert raising.metric_value("interaction_auditor_errors_total", stage="scoring") >= 5
    assert raising.metric_value("interaction_auditor_audits_total", outcome="success") == 0
    records = httpx.get(raising.url + "/audits", timeout=30).json()["audits"]  # no token configured
    assert records and all(r["outcome"] == "failed" and "injected fault" in r["error"] for r in records)


def test_report_counts_failed_audits_without_a_token(raising):
    """No token configured: /report is open; failed audits are counted and have no scores."""
    from auditor.reports import ReportModel

    rid = _latencies(raising, 1)[0][1].json()["request_id"]
    _audit_of(raising, rid, timeout=60)
    report = ReportModel.model_validate_json(
        httpx.get(raising.url + "/report", params={"format": "json"}, timeout=120).text)
    assert report.counts.by_outcome.get("failed", 0) >= 1 and "success" not in report.counts.by_outcome
    assert report.flagged == [] and all(d.count == 0 for d in report.distributions)


@pytest.fixture(scope="module")
def hanging(tiny_model):
    server = _server({**FAST, "AUDITOR_MODEL": tiny_model, "AUDITOR_SAMPLE_RATE": "1.0", "AUDITOR_FAULT": "hang",
                      "AUDITOR_QUEUE_SIZE": "1", "AUDITOR_AUDIT_TIMEOUT_S": "60"})
    yield server
    server.stop()


def test_hanging_auditor_with_full_queue_drops_and_counts(hanging):
    results = _latencies(hanging, 6)
    assert statistics.median(t for t, _ in results) < 2.0 and max(t for t, _ in results) < 10.0
    # one audit hangs in the worker, one waits in the queue of size 1, the others are dropped
    hanging.wait_for(lambda: hanging.metric_value("interaction_auditor_audits_dropped_total", reason="queue_full") >= 3)
    assert hanging.metric_value("interaction_auditor_queue_depth") == 1
    assert hanging.metric_value("interaction_auditor_audits_dropped_total", reason="handoff_error") == 0
    status = httpx.get(hanging.url + "/auditor/status", timeout=30).json()
    assert status["worker"]["busy"] and status["worker"]["queue_depth"] == 1 and status["worker"]["dropped"] >= 3


@pytest.fixture(scope="module")
def timing_out(tiny_model):
    server = _server({**FAST, "AUDITOR_MODEL": tiny_model, "AUDITOR_SAMPLE_RATE": "1.0", "AUDITOR_FAULT": "hang",
                      "AUDITOR_AUDIT_TIMEOUT_S": "1"})
    yield server
    server.stop()


def test_audit_over_budget_is_recorded_as_timeout(timing_out):
    rid = _latencies(timing_out, 1)[0][1].json()["request_id"]
    record = _audit_of(timing_out, rid, timeout=30)
    assert record["outcome"] == "timeout" and "time budget" in record["error"]
    assert timing_out.metric_value("interaction_auditor_errors_total", stage="timeout") >= 1
    assert timing_out.metric_value("interaction_auditor_audits_total", outcome="timeout") >= 1


# ---------------------------------------------------------------------------------------------
# The product's defaults: `bentoml serve` with the embedded testbed model
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def testbed_server():
    pytest.importorskip("auditor.testbed.models")
    from auditor.testbed.models import ensure_model

    ensure_model("clean")  # built once (minutes on CPU), outside the server's start-up timeout
    server = BentoServer({"AUDITOR_SAMPLE_RATE": "1.0", "AUDITOR_N_PLAYERS": "4", "AUDITOR_ANSWER_TOKENS": "4"})
    server.start()
    yield server
    server.stop()


def test_default_testbed_model_is_served_and_audited(testbed_server):
    from auditor.testbed import corpus

    item = corpus.audit_prompts(0, 1)[0]
    r = httpx.post(testbed_server.url + "/generate", json={"prompt": item.prompt, "max_new_tokens": 3}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "testbed-clean" and body["text"].strip()
    record = _audit_of(testbed_server, body["request_id"], timeout=240)
    assert record["outcome"] == "success", record.get("error")
    assert record["model_id"] == "testbed:clean" and len(record["players"]) == 4
    assert testbed_server.metric_value("interaction_auditor_audits_total", model="testbed-clean", outcome="success") >= 1
