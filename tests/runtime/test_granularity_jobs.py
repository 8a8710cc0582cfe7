"""Granularities through the runtime: the job schema, the record of a coarse-to-fine audit (both
levels, misattribution at each from the labels), redaction of segment players, and ``over_budget``.

Oracles: misattribution recomputed from the record's own salient terms and player labels (an
unreliable term holds an irrelevant or forbidden player), hashes recomputed with hashlib.
"""

from __future__ import annotations

import hashlib
import threading

import pytest
from pydantic import ValidationError

from auditor.game.granularity import GRANULARITIES, MAX_COARSE_PLAYERS
from auditor.runtime.jobs import MAX_SEGMENTS, AuditJob, Granularity, SegmentHint
from auditor.runtime.records import OUTCOMES, redact_players
from auditor.runtime.worker import AuditWorker
from runtime.test_worker import ListStore, RecordingTelemetry

PROMPT = ("The defendant Alice stole a bicycle. She was seen in Zürich!\n\n"
          "Bob paid the shop. The court heard witnesses.\n\nThe charge is")
SEGMENTS = [
    {"id": "doc-1", "text": "The defendant Alice stole a bicycle.", "label": "relevant"},
    {"id": "doc-2", "text": "She was seen in Zürich!"},
    {"id": "doc-3", "text": "Bob paid the shop.", "label": "irrelevant"},
    {"id": "doc-4", "text": "The court heard witnesses.", "label": "forbidden"},
]


def test_the_job_schema_mirrors_the_library():
    assert set(Granularity.__args__) == set(GRANULARITIES) and MAX_SEGMENTS == MAX_COARSE_PLAYERS
    assert "over_budget" in OUTCOMES


@pytest.mark.parametrize(("fields", "message"), [
    ({"granularity": "paragraph"}, "granularity"),
    ({"granularity": "segments"}, "granularity 'segments' needs `segments`"),
    ({"segments": [{"id": "a", "text": "Alice"}, {"id": "a", "text": "Bob"}]}, "duplicate id 'a'"),
    ({"segments": [{"id": "a", "text": "   "}]}, "segment 'a': the passage is empty"),
    ({"segments": [{"id": "a", "text": "Alice", "label": "odd"}]}, "segments.0.label"),
    ({"segments": [{"id": "a", "text": "Alice"}], "granularity": "words"}, "use 'segments' or 'auto'"),
    ({"segments": [{"id": "a", "text": "Alice"}], "spans": [{"text": "Bob"}]}, "not both"),
    ({"segments": [{"id": f"d{i}", "text": "Alice"} for i in range(13)]}, "segments"),
    ({"segments": [{"id": "a", "start": "3", "end": 5}]}, "segments.0.start"),
])
def test_bad_job_fields_name_the_field(fields, message):
    with pytest.raises(ValidationError) as info:
        AuditJob(prompt=PROMPT, **fields)
    assert message in str(info.value)


def test_segment_players_keep_id_label_and_hash_not_text():
    from auditor.game.players import Player

    p = Player(0, "Bob paid the shop.", 3, 21, 1, 6, "irrelevant", None, "doc-3")
    digest = "sha256:" + hashlib.sha256(b"Bob paid the shop.").hexdigest()
    for mode in ("masked", "hash"):
        (d,) = redact_players([p], mode)
        assert d["segment_id"] == "doc-3" and d["label"] == "irrelevant" and d["text_sha256"] == digest
        assert "Bob" not in d["text"]
    (full,) = redact_players([p], "full")
    assert full["text"] == "Bob paid the shop."


@pytest.fixture(scope="module")
def tiny():
    from tests.tiny_models import build_model, build_tokenizer

    tok = build_tokenizer()
    return build_model("llama", tok), tok


def _runner(tiny, **overrides):
    from auditor.runtime.job_runner import ModelJobRunner
    from auditor.runtime.settings import AuditorSettings

    model, tok = tiny
    return ModelJobRunner(model, tok, AuditorSettings(n_players=3, answer_tokens=2, **overrides), model_id="tiny")


def _misattribution(salient, labels):
    total = sum(t["strength"] for t in salient)
    bad = sum(t["strength"] for t in salient if any(labels[i] in ("irrelevant", "forbidden") for i in t["players"]))
    return bad / total if total else 0.0


def test_record_of_a_coarse_to_fine_audit_has_both_levels(tiny):
    pytest.importorskip("auditor.metrics.audit_metrics")
    record = _runner(tiny, redaction="hash").run(
        AuditJob(request_id="rag-1", prompt=PROMPT, answer=" theft", segments=SEGMENTS), threading.Event())
    assert record.outcome == "success" and record.metrics["granularity"] == "segments"
    assert [p["segment_id"] for p in record.players] == ["doc-1", "doc-2", "doc-3", "doc-4"]
    assert all(p["text"].startswith("sha256:") for p in record.players)  # no text under hash redaction
    labels = [p["label"] for p in record.players]
    assert record.metrics["misattribution"] == pytest.approx(_misattribution(record.salient, labels), abs=1e-9)
    fine = record.metrics["refinement"]
    assert fine["granularity"] == "words" and 1 <= fine["n_players"] <= 3 and len(fine["refined_players"]) >= 1
    fine_labels = [p["label"] for p in fine["players"]]
    refined_labels = {labels[i] for i in fine["refined_players"]}
    assert set(fine_labels) <= refined_labels  # a word carries the label of its passage
    if any(label in ("irrelevant", "forbidden") for label in fine_labels):
        assert fine["misattribution"] == pytest.approx(_misattribution(fine["salient"], fine_labels), abs=1e-9)
    else:  # None when no player could make a term unreliable (as at the coarse level)
        assert fine["misattribution"] is None
    assert record.cost["refinement"]["tokens_computed"] > 0


def test_a_game_over_the_token_budget_is_recorded_over_budget(tiny):
    pytest.importorskip("auditor.metrics.audit_metrics")
    worker = AuditWorker(_runner(tiny, max_scored_tokens=50), ListStore(), RecordingTelemetry(), timeout_s=60).start()
    try:
        record = worker.audit_now(AuditJob(request_id="big", prompt=PROMPT, answer=" theft", granularity="sentences"))
    finally:
        worker.stop()
    assert record.outcome == "over_budget" and "AUDITOR_MAX_SCORED_TOKENS" in record.error
    assert worker.telemetry.errors == {}  # not an auditor error


def test_segment_hints_round_trip_to_library_specs():
    hint = SegmentHint(id="doc-1", start=0, end=5, label="relevant")
    assert hint.to_spec() == {"id": "doc-1", "start": 0, "end": 5, "label": "relevant"}
