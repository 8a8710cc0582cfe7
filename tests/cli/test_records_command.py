"""``interaction-auditor records verify|export|copy|stats`` on both backends.

Oracles: an independent offline check of the JSONL export (sha256 of canonical JSON, links), counts
computed in the test from the records it wrote, and the exit codes of auditor.cli's contract."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import Counter

import pytest

from auditor.cli import main
from auditor.runtime.records import AuditRecord
from auditor.runtime.store import open_store
from tests.postgres import RawPostgres, fresh_schema

MODELS = ["clean", "shortcut", "clean"]


def records(n: int) -> list[AuditRecord]:
    return [AuditRecord(request_id=f"r{i}", model_id=MODELS[i % 3], sampling_reason="base_rate",
                        outcome="failed" if i % 5 == 0 else "success",
                        flags=["misattribution"] if i % 4 == 0 else []) for i in range(n)]


def offline_chain(lines: list[str]) -> list[str]:
    """The record hashes of an export, each checked against its content and its predecessor."""
    prev, hashes = "0" * 64, []
    for line in lines:
        obj = json.loads(line)
        claimed = obj.pop("record_hash")
        body = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(body.encode()).hexdigest() == claimed and obj["prev_hash"] == prev
        prev = claimed
        hashes.append(claimed)
    return hashes


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/audits.sqlite"
    else:
        with fresh_schema() as pg:
            yield pg


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def raw(url: str):
    if url.startswith("sqlite:///"):
        return sqlite3.connect(url[len("sqlite:///"):], isolation_level=None)
    return RawPostgres(url)


def test_verify_passes_then_names_the_tampered_record(capsys, url):
    with open_store(url) as store:
        for r in records(12):
            store.append(r)
    code, out, _ = run(capsys, "records", "verify", "--store", url, "--json")
    assert code == 0 and json.loads(out)["chain"] == {"ok": True, "checked": 12, "first_bad": None, "reason": None}
    con = raw(url)
    seq = con.execute("SELECT seq FROM audits ORDER BY seq LIMIT 1 OFFSET 6").fetchone()[0]
    con.execute("UPDATE audits SET outcome = 'timeout' WHERE seq = ?", (seq,))
    con.close()
    code, out, _ = run(capsys, "records", "verify", "--store", url)
    assert code == 4 and f"FAILED at record {seq}" in out


def test_export_and_stats_agree_with_what_was_written(capsys, url, tmp_path):
    written = records(23)
    with open_store(url) as store:
        for r in written:
            store.append(r)
    out_file = tmp_path / "export.jsonl"
    code, out, _ = run(capsys, "records", "export", "--store", url, "--out", str(out_file), "--json")
    assert code == 0 and json.loads(out)["records"] == 23
    lines = out_file.read_text().splitlines()
    assert len(offline_chain(lines)) == 23
    assert [json.loads(x)["audit_id"] for x in lines] == [r.audit_id for r in written]
    code, out, _ = run(capsys, "records", "stats", "--store", url, "--json")
    stats = json.loads(out)
    assert code == 0 and stats["records"] == 23
    assert stats["by_model_id"] == dict(Counter(r.model_id for r in written))
    assert stats["by_outcome"] == dict(Counter(r.outcome for r in written))
    assert stats["by_flags"] == dict(Counter(f for r in written for f in r.flags))


def test_copy_sqlite_into_postgres_keeps_the_chain_hash_for_hash(capsys, tmp_path):
    source = f"sqlite:///{tmp_path}/embedded.sqlite"
    with open_store(source) as store:
        for r in records(1234):  # more than one page of the copy
            store.append(r)
        store.export_jsonl(tmp_path / "before.jsonl")
    with fresh_schema() as target:
        code, out, _ = run(capsys, "records", "copy", "--from", source, "--to", target, "--json")
        result = json.loads(out)
        assert code == 0 and result["copied"] == 1234 and result["identical_hashes"] is True
        assert result["target_chain"]["ok"] and result["target_chain"]["checked"] == 1234
        with open_store(target) as copied:
            copied.export_jsonl(tmp_path / "after.jsonl")
        before = (tmp_path / "before.jsonl").read_text().splitlines()
        after = (tmp_path / "after.jsonl").read_text().splitlines()
        assert offline_chain(after) == offline_chain(before) and after == before
        code, _, err = run(capsys, "records", "copy", "--from", source, "--to", target)
        assert code == 2 and "already holds 1234 records" in err  # never into a non-empty store


def test_copy_refuses_a_broken_source(capsys, tmp_path):
    source = f"sqlite:///{tmp_path}/broken.sqlite"
    with open_store(source) as store:
        for r in records(5):
            store.append(r)
    con = sqlite3.connect(tmp_path / "broken.sqlite", isolation_level=None)
    con.execute("DELETE FROM audits WHERE seq = 3")
    con.close()
    target = tmp_path / "target.sqlite"
    code, out, _ = run(capsys, "records", "copy", "--from", source, "--to", f"sqlite:///{target}", "--json")
    assert code == 4 and json.loads(out)["copied"] == 0 and not target.exists()


def test_missing_bad_and_unreachable_stores(capsys, tmp_path):
    code, out, _ = run(capsys, "records", "verify", "--store", str(tmp_path / "none.sqlite"), "--json")
    assert code == 3 and json.loads(out)["exit_code"] == 3
    code, _, err = run(capsys, "records", "stats", "--store", "mysql://h/db")
    assert code == 2 and "unsupported store URL" in err
    code, _, err = run(capsys, "records", "verify", "--store", "postgresql://auditor:s3cret@127.0.0.1:1/audits")
    assert code == 3 and "s3cret" not in err and len(err.strip().splitlines()) == 1
    with fresh_schema() as empty:  # a reachable database without an audit store: not created, exit 3
        code, _, err = run(capsys, "records", "verify", "--store", empty)
        assert code == 3 and "holds no audit store" in err
