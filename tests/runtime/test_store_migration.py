"""Schema versions of the SQLite store: an older store file is migrated when opened, in one
transaction, with its chain intact; a store newer than the code is refused, naming the version.

The version-1 store is written here by hand, as the first release laid it out (its SQL copied into
this file, not taken from the code under test), with a chain whose hashes are computed here with
hashlib over sorted-key JSON: an oracle independent of the store's own hashing. (The PostgreSQL
store's migration is tested in test_store_fleet.py.)
"""

from __future__ import annotations

import hashlib
import json
import sqlite3

import pytest

from auditor.runtime import store as store_module
from auditor.runtime.records import AuditRecord
from auditor.runtime.store import GENESIS_HASH, SCHEMA_VERSION, open_store
from auditor.runtime.store_base import StoreError

V1_SCHEMA = """
CREATE TABLE audits (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    audit_id        TEXT NOT NULL UNIQUE,
    request_id      TEXT NOT NULL,
    created_ts      REAL NOT NULL,
    model_id        TEXT NOT NULL,
    outcome         TEXT NOT NULL,
    sampling_reason TEXT NOT NULL,
    flagged         INTEGER NOT NULL,
    flags           TEXT NOT NULL,
    prev_hash       TEXT NOT NULL,
    record_hash     TEXT NOT NULL,
    data            TEXT NOT NULL
);
CREATE INDEX audits_created ON audits (created_ts);
CREATE INDEX audits_model ON audits (model_id, seq);
CREATE INDEX audits_flagged ON audits (flagged, seq);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
"""


def _sorted_json(obj: dict) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def write_version_1_store(path, n: int) -> list[str]:
    """A version-1 store file with a chain of ``n`` records; returns their record hashes."""
    con = sqlite3.connect(path)
    con.executescript(V1_SCHEMA)
    prev, hashes = GENESIS_HASH, []
    for i in range(n):
        obj = AuditRecord(request_id=f"old-{i}", model_id="clean", flags=["overfitting"] if i % 2 else [],
                          prev_hash=prev).model_dump(mode="json")
        obj.pop("record_hash")
        digest = hashlib.sha256(_sorted_json(obj).encode()).hexdigest()
        obj["record_hash"] = digest
        rec = AuditRecord.model_validate(obj)
        con.execute("INSERT INTO audits (audit_id, request_id, created_ts, model_id, outcome, sampling_reason, flagged,"
                    " flags, prev_hash, record_hash, data) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (rec.audit_id, rec.request_id, rec.created_at.timestamp(), rec.model_id, rec.outcome,
                     rec.sampling_reason, int(rec.flagged), json.dumps(rec.flags), prev, digest, _sorted_json(obj)))
        prev = digest
        hashes.append(digest)
    con.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [("head_hash", prev), ("head_seq", str(n))])
    con.commit()
    con.close()
    return hashes


def tables(path) -> set[str]:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


def stored_version(path) -> str:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    finally:
        con.close()


def test_a_version_1_store_is_migrated_on_open_and_its_chain_still_verifies(tmp_path):
    path = tmp_path / "old.sqlite"
    hashes = write_version_1_store(path, 5)
    assert "auditor_secrets" not in tables(path) and stored_version(path) == "1"
    with open_store(f"sqlite:///{path}") as store:
        assert store.schema_version() == SCHEMA_VERSION == 2
        report = store.verify_chain()
        assert report.ok and report.checked == 5, report
        assert [r.record_hash for r in store.query()[0]] == hashes  # the old records untouched
        new = store.append(AuditRecord(request_id="after-migration"))
        assert new.prev_hash == hashes[-1]  # the chain goes on from the old head
        assert store.verify_chain().checked == 6
    assert "auditor_secrets" in tables(path) and stored_version(path) == "2"
    with open_store(f"sqlite:///{path}") as again:  # opening a current store changes nothing
        assert again.schema_version() == 2 and again.count() == 6


def test_a_failing_migration_leaves_the_old_store_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "old.sqlite"
    write_version_1_store(path, 3)
    monkeypatch.setitem(store_module._MIGRATIONS, 1, [
        "CREATE TABLE auditor_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)",  # runs...
        "ALTER TABLE no_such_table ADD COLUMN x TEXT",  # ...then this fails: the first must be undone too
    ])
    with pytest.raises(StoreError, match="from schema version 1 to 2 failed"):
        open_store(f"sqlite:///{path}")
    assert stored_version(path) == "1" and "auditor_secrets" not in tables(path)
    monkeypatch.undo()
    with open_store(f"sqlite:///{path}") as store:  # the real migration still works afterwards
        assert store.schema_version() == 2 and store.verify_chain().checked == 3


def test_a_new_store_starts_at_the_current_version(tmp_path):
    with open_store(f"sqlite:///{tmp_path}/new.sqlite") as store:
        assert store.schema_version() == SCHEMA_VERSION
    assert {"audits", "meta", "auditor_secrets"} <= tables(tmp_path / "new.sqlite")


def test_a_newer_store_is_refused_naming_both_versions(tmp_path):
    path = tmp_path / "future.sqlite"
    write_version_1_store(path, 2)
    con = sqlite3.connect(path)
    con.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match=rf"schema version 9, newer than this interaction-auditor understands "
                                         rf"\({SCHEMA_VERSION}\); upgrade"):
        open_store(f"sqlite:///{path}")
    assert stored_version(path) == "9"  # refused, not rewritten
