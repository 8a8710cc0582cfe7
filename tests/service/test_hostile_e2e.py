"""Issue 17 end to end: hostile traffic against a real ``bentoml serve`` (auditing at rate 1.0, token set).

Each test reproduces one finding of the outside tester and checks it against an oracle that does not
come from the code under test: HTTP status classes, the raw bytes of ``X-Request-ID``, the
``/metrics`` exposition parsed by prometheus_client, the server log. Run with
``pytest -m slow tests/service/test_hostile_e2e.py`` (one server, about a minute on 2 cores).
"""

from __future__ import annotations

import random
import re
import uuid

import httpx
import pytest

from tests.serving import BentoServer, save_tiny_model

pytestmark = pytest.mark.slow

TOKEN = "hostile-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PROMPT = "The defendant Alice stole a bicycle from the shop and was charged with"
BOMB = b"[" * 2000
CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama")
    srv = BentoServer({"AUDITOR_MODEL": str(model), "AUDITOR_MODEL_LABEL": "tiny-llama", "AUDITOR_N_PLAYERS": "3",
                       "AUDITOR_ANSWER_TOKENS": "2", "AUDITOR_MAX_NEW_TOKENS": "2", "AUDITOR_SAMPLE_RATE": "1.0",
                       "AUDITOR_LOW_CONFIDENCE_THRESHOLD": "none", "AUDITOR_MAX_AUDITS_PER_MINUTE": "none",
                       "AUDITOR_AUTH_TOKEN": TOKEN})
    srv.start()
    yield srv
    srv.stop()


def _record_of(server: BentoServer, request_id: str) -> dict:
    def find():
        r = httpx.get(server.url + "/audits", params={"limit": 1000}, headers=AUTH, timeout=30)
        return next((a for a in r.json()["audits"] if a["request_id"] == request_id), None)

    return server.wait_for(find, timeout=120)


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/audit", "/generate"])
def test_a_nesting_bomb_is_a_400_not_a_500(server, path):
    r = httpx.post(server.url + path, content=BOMB, headers={"content-type": "application/json", **AUTH}, timeout=60)
    assert r.status_code == 400, (r.status_code, r.text[:300])


@pytest.mark.parametrize("given", ["abc\r\nx", "a\x00b", "a\u2028b", "x" * 200, "ok id"])
def test_an_unsafe_request_id_is_replaced_not_echoed(server, given):
    r = httpx.post(server.url + "/generate", json={"prompt": PROMPT, "request_id": given}, timeout=60)
    assert r.status_code == 200, r.text
    echoed = r.headers["x-request-id"]
    assert echoed != given and re.fullmatch(r"[0-9a-f]{32}", echoed) and r.json()["request_id"] == echoed
    record = _record_of(server, echoed)
    assert record["notes"] == ["request_id_replaced"]


def test_a_safe_request_id_is_echoed(server):
    r = httpx.post(server.url + "/generate", json={"prompt": PROMPT, "request_id": "client-42:a.b"}, timeout=60)
    assert r.status_code == 200 and r.headers["x-request-id"] == "client-42:a.b"
    chat = httpx.post(server.url + "/v1/chat/completions", json=CHAT, headers={"X-Request-ID": "bad id"}, timeout=60)
    assert chat.status_code == 200 and chat.headers["x-request-id"] != "bad id"


def test_control_characters_in_a_record_path_are_answered_not_crashed(server):
    log_before = len(server.log_tail(10**9))
    for path in ("/audits/%03", "/audits/%00", "/audits/%0d%0ax", "/audits/%7f", "/%0a"):
        for headers in ({}, AUTH):  # control characters: a 400 naming the path, before any route
            r = httpx.get(server.url + path, headers=headers, timeout=30)
            assert r.status_code == 400 and r.json()["field"] == "path", (path, r.status_code, r.text)
    for path in ("/audits/%ff", "/audits/" + "a" * 300, "/audits/%e2%80%a8"):
        assert httpx.get(server.url + path, timeout=30).status_code == 401  # authentication first
        assert httpx.get(server.url + path, headers=AUTH, timeout=30).status_code in (400, 404)
    assert "Traceback" not in server.log_tail(10**9)[log_before:]  # before: ~6 KB of traceback each


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/generate", {"prompt": PROMPT, "max_new_tokens": "3"}, "max_new_tokens"),
    ("/generate", {"prompt": PROMPT, "max_new_tokens": True}, "max_new_tokens"),
    ("/generate", {"prompt": PROMPT, "max_new_tokens": 257}, "max_new_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": "3"}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": True}, "max_tokens"),
    ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
    ("/v1/completions", {"model": "tiny-llama", "prompt": "hi", "temperature": "0.5"}, "temperature"),
    ("/audit", {"prompt": PROMPT, "spans": [{"start": "0", "end": 3}]}, "spans.0.start"),
])
def test_strings_and_booleans_are_not_integers(server, path, body, field):
    r = httpx.post(server.url + path, json=body, headers=AUTH, timeout=60)
    assert r.status_code == 400, r.text
    assert field in r.text


def test_a_content_free_prompt_is_skipped_and_not_an_auditor_error(server):
    errors_before = server.metric_value("interaction_auditor_errors_total")
    rid = httpx.post(server.url + "/generate", json={"prompt": "?"}, timeout=60).json()["request_id"]
    record = _record_of(server, rid)
    assert record["outcome"] == "skipped" and "no content words" in record["error"]
    assert server.metric_value("interaction_auditor_audits_total", outcome="skipped") >= 1
    assert server.metric_value("interaction_auditor_errors_total") == errors_before


def _series(server: BentoServer) -> list[tuple[str, dict[str, str]]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [(s.name, s.labels) for f in text_string_to_metric_families(server.metrics()) for s in f.samples]


def test_random_paths_do_not_grow_the_metrics(server):
    from service.route_labels import ENDPOINT_LABELS

    rng = random.Random(17)
    junk = ["".join(rng.choice("abc%01%7f%0d%0a/.") for _ in range(8)) for _ in range(40)]
    # path shapes: the label may depend on the shape and on the token, never on the random part
    shapes = ["/audits/{u}", "/nope-{u}", "/v1/{u}", "/audits/{u}/x", "/{u}?{u}=1"] + [f"/{j}{{u}}" for j in junk]

    def hammer(n: int | None) -> None:
        with server.client(timeout=30) as c:
            plan = [(s, a) for s in shapes for a in (True, False)] if n is None else \
                [(rng.choice(shapes), rng.random() < 0.5) for _ in range(n)]
            for shape, auth in plan:
                c.get(shape.format(u=uuid.uuid4()), headers=AUTH if auth else {})

    hammer(None)  # each shape once: its (bounded) series for each status code exist from now on
    before = _series(server)
    hammer(1000)
    after = _series(server)
    print(f"series before {len(before)}, after 1000 random paths {len(after)}")
    assert len(after) == len(before)
    for _, labels in after:
        if "endpoint" in labels:
            assert labels["endpoint"] in ENDPOINT_LABELS, labels
        assert not any(re.search(r"[\x00-\x1f\x7f]", v) for v in labels.values()), labels
