"""auditor.runtime.records and auditor.runtime.store: redaction, canonical records, hash chain, durability."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from auditor.runtime.records import AuditRecord, RedactionMode, compute_record_hash, redact, redact_players
from auditor.runtime.store import GENESIS_HASH, AuditStore, ChainReport, StoreError, open_store
from tests.postgres import RawPostgres, fresh_schema

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)


@dataclass
class P:  # shaped like auditor.game.players.Player
    index: int
    text: str
    char_start: int
    char_end: int
    label: str = "unlabelled"
    group: str | None = None


PROMPT = "Alice hit Bob; Carol watched. What is Alice charged with?"
PLAYERS = [P(0, "Alice", 0, 5, "relevant"), P(1, "hit", 6, 9, "relevant"), P(2, "Carol", 15, 20, "irrelevant")]


def make(i: int = 0, **kw) -> AuditRecord:
    base = dict(
        request_id=f"req-{i}",
        created_at=T0 + timedelta(minutes=i),
        started_at=T0 + timedelta(minutes=i),
        finished_at=T0 + timedelta(minutes=i, seconds=3),
        model_id="clean",
        model_revision="abc123",
        auditor_version="0.1.0",
        settings={"n_players": 3, "K": 16, "qthres": 0.04, "baseline": "pad", "mode": "and-or"},
        sampling_reason="base_rate",
        sampling_probability=0.1,
        prompt=PROMPT,
        answer="theft",
        players=redact_players(PLAYERS),
        salient=[{"kind": "and", "players": [0, 1], "order": 2, "value": 0.75}],
        metrics={"overfitting": 0.1, "misattribution": 0.2, "sparsity": 12, "cancellation": 0.3,
                 "order_profile": {"positive": [0.5, 0.2], "negative": [0.0, 0.1]},
                 "faithfulness": {"max_q_ratio": 0.04, "salient_reconstruction_error": 0.01}},
        flags=[],
        cost={"forward_passes": 8, "tokens_computed": 300, "seconds": 2.5, "device": "cpu"},
    )
    base.update(kw)
    return AuditRecord(**base)


def canonical(obj) -> str:  # written independently of auditor.runtime.records
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def verify_lines(lines: list[str], start: str = GENESIS_HASH) -> int:
    """Independent offline verification of a JSONL export."""
    prev = start
    for line in lines:
        obj = json.loads(line)
        claimed = obj.pop("record_hash")
        assert hashlib.sha256(canonical(obj).encode()).hexdigest() == claimed
        assert obj["prev_hash"] == prev
        prev = claimed
    return len(lines)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path):
    """One suite, both backends: the same tests hold the SQLite and the PostgreSQL store to the same
    guarantees (PostgreSQL in a schema of its own, dropped afterwards; see tests/postgres.py)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/audits.sqlite"
        return
    with fresh_schema() as url:
        yield url


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


# -- redaction ---------------------------------------------------------------------------------
def test_redaction_modes():
    assert redact(PROMPT, PLAYERS, "full") == PROMPT
    masked = redact(PROMPT, PLAYERS, RedactionMode.masked)
    assert masked == "[p0:relevant] [p1:relevant] Bob; [p2:irrelevant] watched. What is Alice charged with?"
    assert redact(PROMPT, PLAYERS, "hash") == "sha256:" + hashlib.sha256(PROMPT.encode()).hexdigest()
    assert redact("é", [], "hash") == "sha256:" + hashlib.sha256("é".encode("utf-8")).hexdigest()
    keyed = redact(PROMPT, [], "hash", key=b"k")
    assert keyed.startswith("sha256:") and keyed != redact(PROMPT, [], "hash")
    assert redact(None, PLAYERS, "masked") is None
    assert redact("theft", [], "masked") == "theft"
    # dict players with span work too, in any order
    dicts = [{"index": 2, "label": "forbidden", "span": (15, 20)}, {"index": 0, "char_start": 0, "char_end": 5}]
    assert redact(PROMPT, dicts, "masked").startswith("[p0:unlabelled] hit Bob; [p2:forbidden] watched")
    with pytest.raises(ValueError):
        redact(PROMPT, [P(0, "x", 0, 5), P(1, "y", 3, 8)], "masked")
    with pytest.raises(ValueError):
        redact("short", [P(0, "x", 2, 50)], "masked")
    with pytest.raises(ValueError):
        redact(PROMPT, [], "partial")


def test_redact_players():
    full = redact_players(PLAYERS, "full")
    assert full[2] == {"index": 2, "text": "Carol", "label": "irrelevant", "group": None, "char_start": 15, "char_end": 20}
    assert [p["text"] for p in redact_players(PLAYERS, "masked")] == ["[p0:relevant]", "[p1:relevant]", "[p2:irrelevant]"]
    hashed = redact_players(PLAYERS, "hash")
    assert hashed[0]["text"] == "sha256:" + hashlib.sha256(b"Alice").hexdigest()
    assert all("Alice" not in json.dumps(p) for p in hashed)


# -- records -----------------------------------------------------------------------------------
def test_record_normalisation_and_timestamps():
    naive = datetime(2025, 1, 2, 3, 4, 5)
    cet = datetime(2025, 1, 2, 4, 4, 5, tzinfo=timezone(timedelta(hours=1)))
    r = make(created_at=naive, started_at=cet, metrics={"a": np.float64(0.5), "b": np.int64(3), "c": np.arange(3),
                                                       "d": float("nan"), "e": (1, 2), 7: True})
    d = r.model_dump(mode="json")
    assert d["created_at"] == "2025-01-02T03:04:05Z"
    assert d["started_at"] == "2025-01-02T03:04:05Z"
    assert d["finished_at"].endswith("Z")
    assert d["metrics"] == {"a": 0.5, "b": 3, "c": [0, 1, 2], "d": None, "e": [1, 2], "7": True}
    assert len(r.audit_id) == 32 and int(r.audit_id, 16) >= 0
    assert make(flags=["overfitting", "misattribution", "overfitting"]).flags == ["overfitting", "misattribution"]
    with pytest.raises(ValidationError):
        make(flags=["prompt text"])
    with pytest.raises(ValidationError):
        make(outcome="exploded")
    with pytest.raises(ValidationError):
        make(unknown_field=1)
    with pytest.raises(ValidationError):
        make(metrics={"x": object()})
    # json round trip is exact
    assert AuditRecord.model_validate_json(r.model_dump_json()) == r


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**62, 2**62) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(metrics=st.dictionaries(st.text(max_size=10), json_values, max_size=5), prompt=st.text(max_size=50))
def test_any_json_content_round_trips_with_a_stable_hash(metrics, prompt):
    r = make(metrics=metrics, prompt=prompt)
    again = AuditRecord.model_validate_json(r.model_dump_json())
    assert again == r
    assert compute_record_hash(again) == compute_record_hash(r)


def test_record_hash_is_sha256_of_canonical_json_without_hash():
    r = make()
    payload = r.model_dump(mode="json")
    del payload["record_hash"]
    assert compute_record_hash(r) == hashlib.sha256(canonical(payload).encode()).hexdigest()
    assert compute_record_hash(r) != compute_record_hash(make(metrics={"overfitting": 0.1000001}))


# -- store -------------------------------------------------------------------------------------
def test_round_trip_and_chain(store):
    stored = [store.append(make(i)) for i in range(5)]
    assert stored[0].prev_hash == GENESIS_HASH
    for a, b in zip(stored, stored[1:]):
        assert b.prev_hash == a.record_hash
    for s in stored:
        got = store.get(s.audit_id)
        assert got == s
        assert got.record_hash == compute_record_hash(got)
    assert store.get("nope") is None
    assert store.verify_chain() == ChainReport(ok=True, checked=5)
    assert store.count() == 5


def test_failed_records_and_duplicates(store):
    store.append(make(0, outcome="failed", error="RuntimeError: boom", metrics={}, salient=[]))
    r = store.append(make(1, outcome="timeout", error="TimeoutError: budget 30 s"))
    with pytest.raises(ValueError):
        store.append(make(2, audit_id=r.audit_id))
    assert store.verify_chain().ok and store.count() == 2
    assert store.count_by("outcome") == {"failed": 1, "timeout": 1}


def test_store_settings_and_urls(tmp_path):
    s = open_store(tmp_path / "sub" / "plain.sqlite")
    s.append(make())
    s.close()
    con = sqlite3.connect(tmp_path / "sub" / "plain.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    s = AuditStore(tmp_path / "sub" / "plain.sqlite")
    assert s._connection().execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert s._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 30000
    s.close()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        with open_store() as d:  # default sqlite:///./audits.sqlite
            d.append(make())
        assert (tmp_path / "audits.sqlite").exists()
    finally:
        os.chdir(cwd)
    with open_store("sqlite:///:memory:") as m:
        m.append(make())
        m.append(make(1))
        assert m.verify_chain().ok
    with pytest.raises(StoreError):
        open_store("mysql://db/audits")


def _raw(store: AuditStore) -> sqlite3.Connection | RawPostgres:
    """Direct SQL on the store's tables, around the store's own code (what a tamperer would use)."""
    if isinstance(store, AuditStore):
        return sqlite3.connect(store.path, isolation_level=None)
    return RawPostgres(store._dsn)


@pytest.mark.parametrize("case", ["json_field", "json_field_rehashed", "column_model", "column_flagged",
                                  "column_hash", "delete_middle", "delete_last", "delete_first", "swap", "meta_head"])
def test_tampering_is_detected(store, case):
    recs = [store.append(make(i)) for i in range(6)]
    con = _raw(store)
    seqs = [row[0] for row in con.execute("SELECT seq FROM audits ORDER BY seq")]
    target = seqs[2]
    data = json.loads(con.execute("SELECT data FROM audits WHERE seq=?", (target,)).fetchone()[0])
    expect_bad = target
    if case == "json_field":
        data["metrics"]["misattribution"] = 0.0
        con.execute("UPDATE audits SET data=? WHERE seq=?", (canonical(data), target))
    elif case == "json_field_rehashed":  # attacker recomputes this record's hash: the next link breaks
        data["metrics"]["misattribution"] = 0.0
        data.pop("record_hash")
        h = hashlib.sha256(canonical(data).encode()).hexdigest()
        data["record_hash"] = h
        con.execute("UPDATE audits SET data=?, record_hash=? WHERE seq=?", (canonical(data), h, target))
        expect_bad = seqs[3]
    elif case == "column_model":
        con.execute("UPDATE audits SET model_id='other' WHERE seq=?", (target,))
    elif case == "column_flagged":
        con.execute("UPDATE audits SET flagged=1 WHERE seq=?", (target,))
    elif case == "column_hash":
        con.execute("UPDATE audits SET record_hash=? WHERE seq=?", ("f" * 64, target))
    elif case == "delete_middle":
        con.execute("DELETE FROM audits WHERE seq=?", (target,))
        expect_bad = seqs[3]
    elif case == "delete_first":
        con.execute("DELETE FROM audits WHERE seq=?", (seqs[0],))
        expect_bad = seqs[1]
    elif case == "delete_last":
        con.execute("DELETE FROM audits WHERE seq=?", (seqs[-1],))
        expect_bad = seqs[-1]
    elif case == "swap":  # exchange the contents of two rows
        rows = {s: con.execute("SELECT audit_id, data, record_hash, prev_hash FROM audits WHERE seq=?", (s,)).fetchone()
                for s in (seqs[2], seqs[3])}
        con.execute("UPDATE audits SET audit_id='tmp-' || seq WHERE seq IN (?, ?)", (seqs[2], seqs[3]))
        for a, b in ((seqs[3], seqs[2]), (seqs[2], seqs[3])):
            con.execute("UPDATE audits SET audit_id=?, data=?, record_hash=?, prev_hash=? WHERE seq=?", (*rows[a], b))
    elif case == "meta_head":
        con.execute("UPDATE meta SET value=? WHERE key='head_hash'", ("e" * 64,))
        expect_bad = seqs[-1]
    con.close()
    report = store.verify_chain()
    assert not report.ok
    assert report.first_bad == expect_bad, report
    assert report.reason
    assert recs  # untouched records stay readable
    assert store.get(recs[0].audit_id) is not None or case == "delete_first"


COLUMNS = ["audit_id", "request_id", "created_ts", "model_id", "outcome", "sampling_reason", "flagged", "flags",
           "prev_hash", "record_hash", "data"]


@pytest.mark.parametrize("column", COLUMNS)
def test_changing_any_column_is_detected(store, column):
    for i in range(4):
        store.append(make(i, flags=["overfitting"] if i == 1 else []))
    con = _raw(store)
    seq = con.execute("SELECT seq FROM audits ORDER BY seq LIMIT 1 OFFSET 1").fetchone()[0]
    old = con.execute(f"SELECT {column} FROM audits WHERE seq=?", (seq,)).fetchone()[0]
    new = {str: lambda v: v[:-1] + ("0" if v[-1] != "0" else "1"), int: lambda v: 1 - v,
           float: lambda v: v + 1e-3}[type(old)](old)
    con.execute(f"UPDATE audits SET {column}=? WHERE seq=?", (new, seq))
    con.close()
    rep = store.verify_chain()
    assert not rep.ok and rep.first_bad == seq, rep


FIELDS = [f for f in AuditRecord.model_fields if f != "record_hash"]


@pytest.mark.parametrize("field", FIELDS)
def test_changing_any_record_field_is_detected(store, field):
    for i in range(3):
        store.append(make(i))
    con = _raw(store)
    seq, data = con.execute("SELECT seq, data FROM audits ORDER BY seq LIMIT 1 OFFSET 1").fetchone()
    obj = json.loads(data)
    obj[field] = {"changed": True} if obj.get(field) != {"changed": True} else None  # empty notes are omitted
    con.execute("UPDATE audits SET data=? WHERE seq=?", (canonical(obj), seq))
    con.close()
    rep = store.verify_chain()
    assert not rep.ok and rep.first_bad == seq, rep


def _append_worker(url: str, worker: int, n: int, barrier) -> None:
    s = open_store(url)
    barrier.wait(60)  # start together so the appends really interleave
    for i in range(n):
        s.append(make(i, request_id=f"w{worker}-{i}"))
        time.sleep(0.002)  # real appenders pause between audits; lets the others in
    s.close()


def test_concurrent_appenders_in_several_processes_keep_one_chain(store_url):
    url = store_url
    open_store(url).close()
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [ctx.Process(target=_append_worker, args=(url, w, 25, barrier)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    s = open_store(url)
    assert s.count() == 100
    assert s.verify_chain() == ChainReport(ok=True, checked=100)
    con = _raw(s)
    prevs = [r[0] for r in con.execute("SELECT prev_hash FROM audits ORDER BY seq")]
    hashes = [r[0] for r in con.execute("SELECT record_hash FROM audits ORDER BY seq")]
    con.close()
    assert len(set(prevs)) == 100 and prevs[1:] == hashes[:-1]  # no forks, one line
    # the appenders really interleaved (otherwise this test would not test concurrency)
    order = [r.request_id.split("-")[0] for r in s.query(limit=100)[0]]
    assert sum(a != b for a, b in zip(order, order[1:])) >= 4, order
    for w in range(4):  # each worker's own records stay in its order
        assert [r for r in order if r == f"w{w}"] and [
            int(x.request_id.split("-")[1]) for x in s.query(limit=100)[0] if x.request_id.startswith(f"w{w}-")
        ] == list(range(25))
    s.close()


def test_concurrent_threads_share_one_store(store):
    def work(t: int) -> None:
        for i in range(20):
            store.append(make(i, request_id=f"t{t}-{i}"))
            store.query(limit=5)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert store.count() == 80
    assert store.verify_chain().ok


def test_paging_and_filters(store):
    for i in range(25):
        store.append(make(i, model_id="clean" if i % 2 == 0 else "shortcut",
                          flags=["misattribution"] if i % 5 == 0 else []))
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = store.query(limit=10, cursor=cursor)
        seen += [r.request_id for r in page]
        pages += 1
        if cursor is None:
            break
    assert pages == 3 and seen == [f"req-{i}" for i in range(25)]
    flagged, nxt = store.query(flagged=True)
    assert [r.request_id for r in flagged] == ["req-0", "req-5", "req-10", "req-15", "req-20"] and nxt is None
    assert len(store.query(flagged=False)[0]) == 20
    assert len(store.query(model="shortcut")[0]) == 12
    window, _ = store.query(since=T0 + timedelta(minutes=3), until=(T0 + timedelta(minutes=6)).isoformat())
    assert [r.request_id for r in window] == ["req-3", "req-4", "req-5"]
    assert len(store.query(since=(T0 + timedelta(minutes=20)).timestamp())[0]) == 5
    page, cur = store.query(model="clean", limit=5)
    page2, _ = store.query(model="clean", limit=5, cursor=cur)
    assert [r.request_id for r in page + page2] == [f"req-{i}" for i in range(0, 20, 2)]
    # a page of exactly the remaining size has no next cursor
    assert store.query(limit=25)[1] is None
    assert store.count_by("model_id") == {"clean": 13, "shortcut": 12}
    assert store.count_by("flagged") == {"true": 5, "false": 20}
    assert store.count_by("flags") == {"misattribution": 5}
    assert store.count_by("sampling_reason") == {"base_rate": 25}
    with pytest.raises(ValueError):
        store.count_by("prompt; DROP TABLE audits")
    with pytest.raises(ValueError):
        store.query(cursor="garbage!")
    with pytest.raises(ValueError):
        store.query(limit=0)


def test_retention_keeps_the_chain_verifiable(store):
    now = T0 + timedelta(days=100)
    for i in range(10):  # 5 old records, then 5 recent ones
        created = T0 + timedelta(days=i) if i < 5 else now - timedelta(days=1)
        store.append(make(i, created_at=created))
    late_old = store.append(make(10, created_at=T0))  # old timestamp but appended after young ones
    assert store.apply_retention(30, now=now) == 5
    assert store.count() == 6
    assert store.get(late_old.audit_id) is not None  # a prefix only: it waits for the records before it
    assert store.verify_chain() == ChainReport(ok=True, checked=6)
    assert store.apply_retention(30, now=now) == 0
    store.append(make(11, created_at=now))
    assert store.verify_chain() == ChainReport(ok=True, checked=7)
    # deleting everything still leaves a chain that continues from the anchor
    assert store.apply_retention(1, now=now + timedelta(days=10)) == 7
    assert store.verify_chain() == ChainReport(ok=True, checked=0)
    r = store.append(make(12, created_at=now + timedelta(days=10)))
    assert r.prev_hash != GENESIS_HASH
    assert store.verify_chain() == ChainReport(ok=True, checked=1)
    with pytest.raises(ValueError):
        store.apply_retention(0)


def test_retention_then_deleting_past_the_anchor_is_detected(store):
    for i in range(6):
        store.append(make(i, created_at=T0 + timedelta(days=i)))
    store.apply_retention(3.5, now=T0 + timedelta(days=6))  # removes days 0..2
    assert store.count() == 3 and store.verify_chain().ok
    con = _raw(store)
    first = con.execute("SELECT MIN(seq) FROM audits").fetchone()[0]
    con.execute("DELETE FROM audits WHERE seq=?", (first,))
    con.close()
    rep = store.verify_chain()
    assert not rep.ok and rep.first_bad == first + 1


def test_jsonl_export(store, tmp_path):
    for i in range(7):
        store.append(make(i))
    path = tmp_path / "out" / "audits.jsonl"
    path.parent.mkdir()
    assert store.export_jsonl(path) == 7
    lines = path.read_text(encoding="utf-8").splitlines()
    assert verify_lines(lines) == 7
    assert [json.loads(x)["request_id"] for x in lines] == [f"req-{i}" for i in range(7)]
    assert AuditRecord.model_validate_json(lines[3]) == store.query(limit=7)[0][3]
    buf = io.StringIO()
    assert store.export_jsonl(buf, since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4)) == 2
    assert [json.loads(x)["request_id"] for x in buf.getvalue().splitlines()] == ["req-2", "req-3"]
    bbuf = io.BytesIO()
    assert store.export_jsonl(bbuf) == 7
    assert bbuf.getvalue().decode("utf-8").splitlines() == lines
    assert not list(path.parent.glob("*.tmp*"))


WRITER = r"""
import sys, itertools
from auditor.runtime.records import AuditRecord
from auditor.runtime.store import open_store
s = open_store(sys.argv[1])
for i in itertools.count():
    r = s.append(AuditRecord(request_id=f"k{i}", model_id="clean", metrics={"i": i, "pad": "x" * 2000}))
    sys.stdout.write(r.audit_id + "\n")
    sys.stdout.flush()
"""


def test_kill_9_mid_stream_loses_no_acknowledged_record(store_url):
    url = store_url
    open_store(url).close()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, url], stdout=subprocess.PIPE, env=env, cwd=ROOT)
    acked: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(acked) < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.endswith(b"\n"):
                acked.append(line.decode().strip())
        assert len(acked) >= 40, "writer did not get going"
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: it is appending as fast as it can
    finally:
        proc.wait(30)
        # complete lines the writer managed to flush before it died are acknowledged too
        rest = proc.stdout.read()
        acked += [x for x in rest.decode(errors="replace").split("\n")[:-1] if x]
    assert proc.returncode == -signal.SIGKILL
    s = open_store(url)  # restart: opening recovers the WAL
    try:
        missing = [a for a in acked if s.get(a) is None]
        assert not missing
        rep = s.verify_chain()
        assert rep.ok, rep
        assert rep.checked >= len(acked)  # the last append may have committed before its id was printed
        s.append(AuditRecord(request_id="after-restart"))
        assert s.verify_chain().ok
    finally:
        s.close()
