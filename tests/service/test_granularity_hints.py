"""The ``audit`` object's ``granularity`` and ``segments`` on /generate and in OpenAI ``extra_body``:
strict schema, and the pre-generation check that names the field and the segment id (HTTP 400).
The answer path is untouched: these checks run before generation and raise ``RequestError``."""

from __future__ import annotations

import types

import pytest
from pydantic import ValidationError

from auditor.game.loading import LoadedModel
from service.generation import Generator, RequestError
from service.schemas import AuditHints, AuditRequest, ChatCompletionRequest, error_field

PROMPT = "The defendant Alice stole a bicycle. Bob paid the shop. The charge is"


@pytest.mark.parametrize(("body", "field"), [
    ({"granularity": "paragraphs"}, "granularity"),
    ({"granularity": 3}, "granularity"),
    ({"segments": [{"id": "doc-1", "text": "a", "label": "spurious"}]}, "segments.0.label"),
    ({"segments": [{"id": "doc 1!", "text": "a"}]}, "segments.0.id"),
    ({"segments": [{"id": "doc-1", "text": "a", "colour": "red"}]}, "segments.0.colour"),
    ({"segments": [{"id": f"d{i}", "text": "a"} for i in range(13)]}, "segments"),
])
def test_schema_errors_name_the_field(body, field):
    with pytest.raises(ValidationError) as e:
        AuditHints.model_validate(body)
    assert error_field(e.value.errors()) == field


def test_cross_field_errors_name_the_segment():
    with pytest.raises(ValidationError, match="duplicate id 'doc-1'"):
        AuditHints.model_validate({"segments": [{"id": "doc-1", "text": "a"}, {"id": "doc-1", "text": "b"}]})
    with pytest.raises(ValidationError, match="segment 'doc-2': the passage is empty"):
        AuditHints.model_validate({"segments": [{"id": "doc-2", "text": " "}]})
    with pytest.raises(ValidationError, match="not both"):
        AuditHints.model_validate({"spans": [{"text": "a"}], "segments": [{"id": "d", "text": "b"}]})


def test_openai_extra_body_and_sync_audit_carry_the_fields():
    req = ChatCompletionRequest.model_validate({
        "model": "m", "messages": [{"role": "user", "content": PROMPT}],
        "audit": {"granularity": "segments", "segments": [{"id": "doc-3", "text": "Bob paid the shop.",
                                                            "label": "irrelevant"}]}})
    assert req.audit.granularity == "segments" and req.audit.segments[0].id == "doc-3" and req.audit.labelled
    sync = AuditRequest.model_validate({"prompt": PROMPT, "granularity": "sentences"})
    assert sync.granularity == "sentences"


@pytest.fixture(scope="module")
def llm_self():
    """Just what ``LLM.check_hints`` reads: ``self.generator`` (a tiny model's tokenizer)."""
    from tests.tiny_models import build_model, build_tokenizer

    tok = build_tokenizer()
    generator = Generator(LoadedModel(build_model("llama", tok), tok, "tiny", None, None, "cpu", "float32"),
                          max_prompt_chars=2000, max_new_tokens_limit=8)
    return types.SimpleNamespace(generator=generator)


@pytest.mark.parametrize(("segments", "message"), [
    ([{"id": "doc-9", "text": "not in it"}], "segments['doc-9'].text: not found"),
    ([{"id": "a", "text": "Alice stole"}, {"id": "b", "text": "stole a bicycle"}], "segments['a'] and segments['b'] overlap"),
])
def test_segments_not_in_the_prompt_are_400_naming_the_id(llm_self, segments, message):
    from service.llm import LLM

    check = LLM.inner.check_hints
    rendered = llm_self.generator.render_prompt(PROMPT)
    hints = AuditHints.model_validate({"segments": segments})
    with pytest.raises(RequestError) as e:
        check(llm_self, rendered, hints, field="audit.spans")
    assert e.value.field == "audit.segments" and message in e.value.message
    check(llm_self, rendered, AuditHints.model_validate({"segments": [{"id": "ok", "text": "Bob paid the shop."}]}),
          field="audit.spans")


def test_the_hook_hands_granularity_and_labelled_segments_to_the_auditor():
    """Segments given as plain dicts (a third-party service using the hook) are validated, boost
    sampling when labelled (reason ``labelled``) and reach the job unchanged."""
    import asyncio
    from collections import Counter

    from auditor.runtime.settings import AuditorSettings
    from service.hook import AuditHook

    jobs = []

    class _Async:
        async def submit(self, job):
            jobs.append(job)
            return {"accepted": True, "reason": "queued", "queue_depth": 1}

    class _Tel:
        def __init__(self):
            self.sampling = Counter()

        def record_sampling(self, d):
            self.sampling[d.reason] += 1

        def record_drop(self, r):
            raise AssertionError(f"dropped: {r}")

        def record_error(self, s):
            raise AssertionError(f"error: {s}")

    hook = AuditHook(AuditorSettings(sample_rate=0.0, boost_rate=1.0, low_confidence_threshold=None,
                                     max_audits_per_minute=None, sampling_key="unit-test-key"))
    hook.telemetry = _Tel()

    async def main():
        await hook.after_answer(types.SimpleNamespace(to_async=_Async()), "r-seg", prompt=PROMPT, answer="theft",
                                granularity="segments",
                                segments=[{"id": "doc-3", "text": "Bob paid the shop.", "label": "irrelevant"}])
        for _ in range(200):
            if not hook.inflight:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())
    assert hook.telemetry.sampling == {"labelled": 1}
    (job,) = jobs
    assert job.granularity == "segments" and [(s.id, s.label) for s in job.segments] == [("doc-3", "irrelevant")]
