"""A coarse-to-fine audit in the compliance report: the coarse players by segment id, the refinement
level (refined passages, their words, terms and misattribution) in the JSON and on the HTML page.
The expected values are read back from the stored record itself, not hard-coded."""

from __future__ import annotations

import json
import threading

import pytest

from auditor.reports import build_report, render_html, render_json
from auditor.runtime.store import open_store

PROMPT = ("The defendant Alice stole a bicycle. She was seen in Zürich!\n\n"
          "Bob paid the shop. The court heard witnesses.\n\nThe charge is")
SEGMENTS = [
    {"id": "doc-1", "text": "The defendant Alice stole a bicycle.", "label": "relevant"},
    {"id": "doc-2", "text": "She was seen in Zürich!"},
    {"id": "doc-3", "text": "Bob paid the shop.", "label": "irrelevant"},
    {"id": "doc-4", "text": "The court heard witnesses.", "label": "forbidden"},
]


@pytest.fixture(scope="module")
def report_and_record(tmp_path_factory):
    pytest.importorskip("auditor.metrics.audit_metrics")
    from tests.tiny_models import build_model, build_tokenizer, single_thread

    from auditor.runtime.job_runner import ModelJobRunner
    from auditor.runtime.jobs import AuditJob
    from auditor.runtime.settings import AuditorSettings

    tok = build_tokenizer()
    settings = AuditorSettings(model="tiny", n_players=3, answer_tokens=2, redaction="full",
                               overfitting_threshold=0.0, misattribution_threshold=0.0)
    with single_thread():
        record = ModelJobRunner(build_model("llama", tok), tok, settings, model_id="tiny").run(
            AuditJob(prompt=PROMPT, answer=" theft", segments=SEGMENTS), threading.Event())
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('levels') / 'a.sqlite'}")
    stored = store.append(record)
    return build_report(store, "2000-01-01", "2100-01-01"), stored


def test_the_report_model_has_both_levels(report_and_record):
    report, record = report_and_record
    (audit,) = report.flagged
    assert audit.granularity == "segments"
    assert [p.segment_id for p in audit.players] == [s["id"] for s in SEGMENTS]
    assert all(w in {s["id"] for s in SEGMENTS} for t in audit.top_terms for w in t.words)  # terms read by id
    fine = record.metrics["refinement"]
    assert audit.refinement is not None
    assert audit.refinement.refined_players == fine["refined_players"]
    assert [p.text for p in audit.refinement.players] == [p["text"] for p in fine["players"]]
    assert audit.refinement.salient_total == len(fine["salient"])
    data = json.loads(render_json(report))
    assert data["flagged"][0]["refinement"]["refined_players"] == fine["refined_players"]


def test_the_html_page_shows_the_refinement(report_and_record):
    report, record = report_and_record
    page = render_html(report)
    assert 'data-role="refinement"' in page and "players: segments" in page
    refined_ids = [record.players[i]["segment_id"] for i in record.metrics["refinement"]["refined_players"]]
    assert all(sid in page for sid in refined_ids)
