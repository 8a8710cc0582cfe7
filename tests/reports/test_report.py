"""Compliance reports: content from a store of real audit records, the JSON schema, the HTML page
rendered in headless Chromium (DOM and screenshot), the hash-chain result and the CLI.

The store is filled by the real audit engine (``auditor.runtime.job_runner.ModelJobRunner``: players -> masked
scores of a tiny random-init Llama -> certified AND-OR split -> metrics -> redacted record), under
all three redaction modes, two models, several sampling reasons, one failed audit, and records
outside the reported period.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tools import require_program

from auditor.cli import main
from auditor.reports import ReportModel, build_report, render_html, render_json
from auditor.runtime.store import open_store

BASE = datetime(2025, 3, 1, tzinfo=timezone.utc)
PROMPTS = [
    ("The defendant Alice stole a bicycle from the shop",
     [("Alice", "forbidden"), ("stole", "relevant"), ("bicycle", "relevant"), ("shop", "irrelevant")]),
    ("Carol forged a cheque at the bank and was charged",
     [("Carol", "forbidden"), ("forged", "relevant"), ("cheque", "relevant"), ("bank", "irrelevant")]),
]


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory):
    from tests.tiny_models import build_model, build_tokenizer, single_thread

    from auditor.runtime.settings import AuditorSettings
    from auditor.runtime.job_runner import ModelJobRunner
    from auditor.runtime.jobs import AuditJob, PlayerHint

    path = tmp_path_factory.mktemp("report") / "audits.sqlite"
    store = open_store(f"sqlite:///{path}")
    tok = build_tokenizer()
    models = {"tiny-llama": build_model("llama", tok), "tiny-qwen2": build_model("qwen2", tok)}
    hour = 0
    with single_thread():
        for model_id, model in models.items():
            for redaction in ("full", "masked", "hash"):
                settings = AuditorSettings(model=model_id, n_players=4, answer_tokens=2, redaction=redaction,
                                           overfitting_threshold=0.3, misattribution_threshold=0.75)
                engine = ModelJobRunner(model, tok, settings, model_id=model_id, model_revision=f"rev-{model_id[-4:]}")
                for k, (prompt, spans) in enumerate(PROMPTS):
                    job = AuditJob(prompt=prompt, spans=[PlayerHint(text=t, label=lab) for t, lab in spans],
                                   sampling_reason=("base_rate", "low_confidence")[k])
                    record = engine.run(job, threading.Event())
                    store.append(record.model_copy(update={"created_at": BASE + timedelta(hours=hour)}))
                    hour += 1
            failed = engine.failure_record(job, "timeout", "time budget exhausted while scoring", BASE, BASE)
            store.append(failed.model_copy(update={"created_at": BASE + timedelta(hours=hour), "sampling_reason": "caller_flagged"}))
            hour += 1
        # outside the period: before and after
        for when in (BASE - timedelta(days=3), BASE + timedelta(days=10)):
            store.append(record.model_copy(update={"created_at": when, "audit_id": f"out-{when.day}"}))
    store.close()
    return path


def _period():
    return BASE - timedelta(hours=1), BASE + timedelta(days=2)


def test_report_content_follows_the_records(filled_store):
    store = open_store(filled_store)
    since, until = _period()
    report = build_report(store, since, until)
    records, _ = store.query(since=since, until=until, limit=1000)
    assert report.counts.total == len(records) == 14
    assert report.store.records_in_store == 16
    assert report.counts.by_outcome == {"success": 12, "timeout": 2}
    assert report.counts.by_reason == {"base_rate": 6, "low_confidence": 6, "caller_flagged": 2}
    assert sum(row.count for row in report.counts.table) == 14
    flagged = [r for r in records if r.flags]
    assert report.counts.flagged == report.flagged_total == len(flagged) > 0
    assert {m.model_id for m in report.models} == {"tiny-llama", "tiny-qwen2"}
    llama = next(m for m in report.models if m.model_id == "tiny-llama")
    assert llama.revisions == ["rev-lama"] and llama.audits == 7 and llama.successful == 6
    assert llama.labels == ["tiny-llama"] and llama.window_overfitting and llama.window_overfitting[0].n == 4

    dists = {d.metric: d for d in report.distributions}
    successes = [r for r in records if r.outcome == "success"]
    assert dists["sparsity"].count == len(successes) == 12
    assert sum(b.count for b in dists["overfitting"].bins) == 12
    assert dists["overfitting"].threshold == 0.3 and dists["misattribution"].threshold == 0.75
    expected_mean = sum(r.metrics["overfitting"] for r in successes) / 12
    assert dists["overfitting"].mean == pytest.approx(expected_mean)
    assert dists["misattribution"].at_or_above_threshold == sum(r.metrics["misattribution"] >= 0.75 for r in successes)
    assert report.chain.ok and report.chain.checked == 16

    # flagged audits, most recent first, drawn as each record's redaction allows
    assert [f.audit_id for f in report.flagged] == [r.audit_id for r in reversed(flagged)]
    for view in report.flagged:
        record = next(r for r in records if r.audit_id == view.audit_id)
        assert view.top_terms and len(view.top_terms) <= 5
        assert view.top_terms[0].strength == pytest.approx(max(t["strength"] for t in record.salient))
        prompt_text = "".join(seg.text for seg in view.segments)
        if view.redaction == "full":
            assert prompt_text == record.prompt
            players = {seg.player: seg.text for seg in view.segments if seg.player is not None}
            assert players == {p["index"]: p["text"] for p in record.players}
            assert all(w in players.values() for t in view.top_terms for w in t.words)
        elif view.redaction == "masked":
            assert prompt_text == record.prompt and "[p0:forbidden]" in prompt_text
            assert not any(word in prompt_text for word in ("Alice", "Carol", "bicycle", "cheque"))
            assert {seg.player for seg in view.segments if seg.player is not None} == {0, 1, 2, 3}
        else:
            assert view.segments == [] and not view.prompt_kept and "hash" in view.note
            assert all(re.fullmatch(r"p\d:\w+", w) for t in view.top_terms for w in t.words)

    # the model filter and an empty period
    only = build_report(store, since, until, model="tiny-qwen2")
    assert only.counts.total == 7 and [m.model_id for m in only.models] == ["tiny-qwen2"]
    empty = build_report(store, "2020-01-01", "2020-01-02")
    assert empty.counts.total == 0 and empty.flagged == [] and "no data" in render_html(empty)
    with pytest.raises(ValueError, match="empty period"):
        build_report(store, until, since)
    store.close()


def test_json_report_validates_against_the_schema(filled_store):
    report = build_report(f"sqlite:///{filled_store}", *_period())
    text = render_json(report)
    again = ReportModel.model_validate(json.loads(text))
    assert again == report
    data = json.loads(text)
    data["surprise"] = 1
    with pytest.raises(Exception):
        ReportModel.model_validate(data)
    assert {m["name"] for m in data["methods"]} >= {"Sparsity", "Overfitting score", "Misattribution score",
                                                    "Cross-model comparison", "Hash chain"}


# ------------------------------------------------------------------------------------------------
# The HTML page in a real browser
# ------------------------------------------------------------------------------------------------
def _chromium() -> str:
    return require_program("chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
                           install="apt-get install --no-install-recommends chromium")


def _browser(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
               "--disable-extensions", f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def _png_summary(path: Path) -> dict:
    """Distinct colours and the share of non-background pixels (PIL), or, without PIL, the same
    from the decompressed PNG scanlines (a blank page filters to nearly all zero bytes)."""
    try:
        from PIL import Image
    except ImportError:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        pos, idat = 8, b""
        while pos < len(data):
            length = int.from_bytes(data[pos:pos + 4], "big")
            kind = data[pos + 4:pos + 8]
            if kind == b"IDAT":
                idat += data[pos + 8:pos + 8 + length]
            pos += 12 + length
        raw = zlib.decompress(idat)
        return {"colours": len(set(raw)), "ink": sum(1 for b in raw if b) / len(raw), "bar_pixels": None}
    with Image.open(path) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=1 << 22)
        total = rgb.width * rgb.height
        background = max(colours)[0]
        bar = sum(count for count, colour in colours if colour == (0x4F, 0x7C, 0xC9))  # histogram bars
        return {"colours": len(colours), "ink": 1 - background / total, "bar_pixels": bar, "size": rgb.size}


def test_html_renders_in_headless_chromium(filled_store, tmp_path):
    binary = _chromium()
    report = build_report(open_store(filled_store), *_period())
    page = render_html(report)
    # self-contained: no scripts, no external references of any kind
    assert "<script" not in page.lower()
    assert not re.search(r"\b(src|href)\s*=", page, re.I)
    assert not re.search(r"url\(|@import", page, re.I)
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) <= {"http://www.w3.org/2000/svg"}
    html_file = tmp_path / "report.html"
    html_file.write_text(page, encoding="utf-8")

    dom = _browser(binary, tmp_path / "profile-dom", "--dump-dom", html_file.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    for section in ("models", "counts", "distributions", "flagged", "chain", "settings", "methods"):
        assert f'id="{section}"' in text, section
    assert f'<div class="v" id="total-audits">{report.counts.total}</div>' in text
    assert len(re.findall(r'<svg[^>]*class="hist"', text)) == 3
    for metric in ("overfitting", "misattribution", "sparsity"):
        assert f'data-metric="{metric}"' in text
    assert len(re.findall(r'<rect class="bin"', text)) >= 3
    assert text.count('class="audit"') == len(report.flagged) > 0
    assert re.search(r'<mark class="(pos|neg) (and|or)" data-player="\d"', text)  # terms over the words
    assert "[p0:forbidden]" in text and "tiny-llama" in text and "tiny-qwen2" in text and "rev-lama" in text
    assert 'data-chain-ok="true"' in text and "verified" in text
    assert "base_rate" in text and "low_confidence" in text and "timeout" in text
    assert "Misattribution score" in text and "spindle" in text

    shot = tmp_path / "report.png"
    result = _browser(binary, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1200,2000",
                      html_file.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    keep = os.environ.get("AUDITOR_REPORT_SCREENSHOT")
    if keep:  # for a person to look at
        shutil.copy(shot, keep)
    summary = _png_summary(shot)
    assert summary["colours"] > 50, summary
    assert summary["ink"] > 0.05, summary
    if summary["bar_pixels"] is not None:
        assert summary["size"] == (1200, 2000)
        assert summary["bar_pixels"] > 200, summary  # the SVG histograms were drawn


def test_tampering_shows_in_the_report(filled_store, tmp_path):
    copy = tmp_path / "tampered.sqlite"
    src = sqlite3.connect(filled_store)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    seq, data = dst.execute("SELECT seq, data FROM audits ORDER BY seq LIMIT 1 OFFSET 3").fetchone()
    obj = json.loads(data)
    obj["sampling_reason"] = "edited"
    dst.execute("UPDATE audits SET data = ? WHERE seq = ?", (json.dumps(obj), seq))
    dst.commit()
    dst.close()
    report = build_report(open_store(copy), *_period())
    assert not report.chain.ok and report.chain.first_bad == seq and report.chain.reason
    page = render_html(report)
    assert 'data-chain-ok="false"' in page and "FAILED" in page


# ------------------------------------------------------------------------------------------------
# The command line
# ------------------------------------------------------------------------------------------------
def test_cli_report_json_and_html(filled_store, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["report", "--store", f"sqlite:///{filled_store}", "--from", "2025-02-28T23:00:00Z",
                 "--to", "2025-03-03", "--format", "json", "--out", str(out), "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["audits"] == 14 and summary["chain"]["ok"] and summary["format"] == "json"
    report = ReportModel.model_validate_json(out.read_text())
    assert report.counts.total == 14

    html_out = tmp_path / "r.html"
    assert main(["report", "--store", str(filled_store), "--model", "tiny-llama", "--out", str(html_out)]) == 0
    assert html_out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", "--store", str(filled_store), "--from", "2025-03-01", "--to", "2025-03-02",
                 "--format", "json"]) == 0
    assert ReportModel.model_validate_json(capsys.readouterr().out).counts.total == 14


def test_cli_report_errors(tmp_path, capsys, filled_store):
    missing = tmp_path / "nope" / "audits.sqlite"
    assert main(["report", "--store", f"sqlite:///{missing}", "--out", str(tmp_path / "x.html")]) == 3
    assert "no audit store" in capsys.readouterr().err and not missing.exists()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    assert main(["report", "--store", str(garbage), "--out", str(tmp_path / "x.html")]) == 3
    assert main(["report", "--store", str(filled_store), "--from", "yesterday"]) == 2
    assert "ISO-8601" in capsys.readouterr().err
    assert main(["report", "--store", str(filled_store), "--from", "2025-03-02", "--to", "2025-03-01"]) == 2
    assert main(["report", "--store", "mysql://db/audits"]) == 2  # no such backend
    capsys.readouterr()
    assert main(["report", "--store", "postgres://db/audits"]) == 3  # a PostgreSQL store that does not answer
    assert "cannot connect to the audit store" in capsys.readouterr().err
    assert main(["report", "--store", str(filled_store), "--json"]) == 2  # summary and report both on stdout
    assert main(["report", "--store", str(filled_store), "--out", str(tmp_path / "no" / "dir" / "r.html")]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--help"])
    assert exit_info.value.code == 0
    assert "exit codes" in capsys.readouterr().out
