"""Issue 17, without a server: the pieces behind the hostile-input fixes.

Oracles: Python's own json and header rules (what h11 refuses to send), the counts a fake auditor
keeps of what it accepted, and the set of route templates.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import ValidationError

from auditor.runtime.settings import AuditorSettings
from service.common import SAFE_REQUEST_ID, read_json, safe_request_id
from service.route_labels import ENDPOINT_LABELS, OTHER, endpoint_label
from service.schemas import AuditRequest, ChatCompletionRequest, CompletionRequest


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    async def body(self) -> bytes:
        return self._body


def test_a_nesting_bomb_is_a_value_error_not_a_recursion_error():
    with pytest.raises(RecursionError):  # the oracle: what json.loads itself does with it
        json.loads(b"[" * 100_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        asyncio.run(read_json(_Body(b"[" * 100_000)))


@pytest.mark.parametrize("given", ["abc\r\nx", "a\x00b", "a\u2028b", "é", "a b", "x" * 129, "-lead", ""])
def test_unsafe_request_ids_are_replaced(given):
    rid, replaced = safe_request_id(given)
    assert rid != given and len(rid) == 32 and rid.isascii() and rid.isalnum()
    assert replaced == (given != "")  # an absent id is generated, not "replaced"
    rid.encode("latin-1")  # what a header value must be


@pytest.mark.parametrize("given", ["req-1", "0f" * 16, "client:42.a_b@x+y=z", "x" * 128])
def test_safe_request_ids_are_kept(given):
    assert safe_request_id(given) == (given, False) and SAFE_REQUEST_ID.fullmatch(given)


@pytest.mark.parametrize(("model", "body", "field"), [
    (ChatCompletionRequest, {"max_tokens": "3"}, "max_tokens"),
    (ChatCompletionRequest, {"max_tokens": True}, "max_tokens"),
    (ChatCompletionRequest, {"stream": "true"}, "stream"),
    (ChatCompletionRequest, {"temperature": "0.5"}, "temperature"),
    (ChatCompletionRequest, {"seed": 1.5}, "seed"),
    (CompletionRequest, {"echo": 1}, "echo"),
    (AuditRequest, {"answer_ids": [1, "2"]}, "answer_ids"),
])
def test_strict_types(model, body, field):
    base = {"model": "m", "messages": [{"role": "user", "content": "x"}]} if model is ChatCompletionRequest else \
        {"model": "m", "prompt": "x"} if model is CompletionRequest else {"prompt": "x"}
    with pytest.raises(ValidationError) as e:
        model.model_validate({**base, **body})
    assert e.value.errors()[0]["loc"][0] == field


def test_endpoint_labels_are_route_templates():
    assert endpoint_label("/audits/0123") == "/audits/{audit_id}" and endpoint_label("/generate") == "/generate"
    for path in ("/nope-1", "/audits/a/b", "/\x03", "/v1/chat/completions/x", None, "/audits/"):
        assert endpoint_label(path) == OTHER
    assert len(set(ENDPOINT_LABELS)) == len(ENDPOINT_LABELS)


class _LateAuditor:
    """Accepts at once (before the deadline) but its reply arrives later than the old 2 s wait:
    the tester's ``AUDITOR_FAULT=hang`` runs, where an accepted job was also counted as dropped."""

    def __init__(self, reply_after: float) -> None:
        self.accepted: list[str] = []
        outer = self

        class _Async:
            async def submit(self, job):
                outer.accepted.append(job.request_id)
                await asyncio.sleep(reply_after)
                return {"accepted": True, "reason": "queued", "queue_depth": 1}

        self.to_async = _Async()


def test_an_accepted_hand_off_is_never_also_counted_as_dropped():
    from service.hook import AuditHook
    from tests.service.test_serving_units import _Tel

    async def main():
        hook = AuditHook(AuditorSettings(sample_rate=1.0, handoff_timeout_s=0.2, sampling_key="k",
                                         low_confidence_threshold=None, max_audits_per_minute=None))
        hook.telemetry = _Tel()
        auditor = _LateAuditor(reply_after=0.5)  # later than handoff_timeout_s, within the margin
        for i in range(5):
            await hook.after_answer(auditor, f"r{i}", prompt="The defendant Alice", answer="x")
        for _ in range(300):
            if not hook.inflight:
                break
            await asyncio.sleep(0.01)
        return hook, auditor

    hook, auditor = asyncio.run(main())
    sampled = sum(hook.telemetry.sampling.values())
    assert sampled == 5 and len(auditor.accepted) == 5
    assert sum(hook.telemetry.drops.values()) == 0  # before: 5 accepted and 5 handoff_error
    assert sampled == len(auditor.accepted) + sum(hook.telemetry.drops.values())
