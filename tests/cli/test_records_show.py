"""``interaction-auditor records show``: the newest records, one request's, one audit; read from the store only."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from auditor.cli import main
from auditor.runtime.records import AuditRecord
from auditor.runtime.store import open_store
from tests.record_samples import sample_record


def _run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


@pytest.fixture()
def store_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'audits.sqlite'}"
    store = open_store(url)
    for i in range(7):
        store.append(sample_record(i, "testbed:clean", flagged=i % 3 == 0))
    players = [{"index": 0, "text": "[p0:relevant]", "label": "relevant", "group": None, "char_start": 0,
                "char_end": 7},
               {"index": 1, "text": "[p1:irrelevant]", "label": "irrelevant", "group": None, "char_start": 8,
                "char_end": 12, "segment_id": "doc-2", "text_sha256": "ab" * 32}]
    store.append(AuditRecord(
        request_id="req-rag", model_id="testbed:clean", answer="vandalism", players=players,
        salient=[{"kind": "and", "players": [0], "order": 1, "value": 3.0},
                 {"kind": "or", "players": [0, 1], "order": 2, "value": -1.0}],
        metrics={"v_full": 5.0, "v_empty": -3.5, "misattribution": 0.25, "overfitting": 0.1, "cancellation": 0.5,
                 "granularity": "segments", "refinement": {"misattribution": 0.0}},
    ))
    store.close()
    return url


def test_the_newest_record_by_default_with_values_computed_from_it(store_url) -> None:
    code, out = _run("records", "show", "--store", store_url, "--json")
    assert code == 0
    [shown] = json.loads(out)["records"]
    assert shown["request_id"] == "req-rag"
    assert shown["v_full_minus_v_empty"] == pytest.approx(8.5)
    assert shown["salient_terms"] == 2
    # ordered by |value|, players named by segment id where the record has one, shares of |3| + |-1|
    assert [(t["kind"], t["players"], t["share_of_salient"]) for t in shown["top_terms"]] == [
        ("AND", ["[p0:relevant]"], 0.75), ("OR", ["[p0:relevant]", "doc-2"], 0.25)]
    assert shown["players"] == [{"name": "[p0:relevant]", "label": "relevant"},
                                {"name": "doc-2", "label": "irrelevant"}]
    assert (shown["misattribution"], shown["refined_misattribution"]) == (0.25, 0.0)
    code, text = _run("records", "show", "--store", store_url)
    assert code == 0
    assert "OR([p0:relevant] | doc-2) = -1.00  (25% of salient strength)" in text
    assert "v(N) - v(empty) = +8.50" in text and "refined misattribution 0.00" in text
    assert "players (segments): [p0:relevant], doc-2 [irrelevant]" in text  # a placeholder names its label once


def test_last_flagged_request_and_audit_id_select_what_they_say(store_url) -> None:
    code, out = _run("records", "show", "--store", store_url, "--json", "--last", "2", "--flagged")
    # flagged samples are i = 0, 3, 6: the newest two, oldest first (chain order)
    assert [r["request_id"] for r in json.loads(out)["records"]] == ["req-3", "req-6"]
    code, out = _run("records", "show", "--store", store_url, "--json", "--request-id", "req-4")
    [record] = json.loads(out)["records"]
    assert record["request_id"] == "req-4" and record["flags"] == []
    code, out = _run("records", "show", "--store", store_url, "--json", "--audit-id", record["audit_id"])
    assert [r["audit_id"] for r in json.loads(out)["records"]] == [record["audit_id"]]
    code, out = _run("records", "show", "--store", store_url, "--json", "--audit-id", "nope")
    assert code == 0 and json.loads(out)["records"] == []


def test_bad_values_exit_2_and_a_missing_store_exit_3(store_url, tmp_path) -> None:
    assert _run("records", "show", "--store", store_url, "--last", "0")[0] == 2
    assert _run("records", "show", "--store", store_url, "--top", "-1")[0] == 2
    assert _run("records", "show", "--store", f"sqlite:///{tmp_path / 'missing.sqlite'}")[0] == 3
