"""A fleet on one PostgreSQL store (auditor.runtime.store_postgres) and the outage spool
(auditor.runtime.spool): many writers, one chain; schema versions; outages lose nothing acknowledged.

The backend-independent guarantees (chain, tampering, retention, export, filters, kill -9) are the
parametrised suite of test_records_store.py; this file holds what only a server store, or the spool,
can show. Oracles are independent of the code under test: a recomputed sha256 chain over the raw
rows, the set of ids the writers saw acknowledged, file counts on disk.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from prometheus_client import CollectorRegistry

from auditor.runtime.records import AuditRecord
from auditor.runtime.spool import Spool, SpoolingStore, open_spooled_store
from auditor.runtime.store import GENESIS_HASH, open_store
from auditor.runtime.store_base import StoreError, StoreUnavailable
from auditor.runtime.store_postgres import SCHEMA_VERSION
from auditor.runtime.telemetry import AuditorTelemetry
from tests.postgres import CuttableProxy, RawPostgres, fresh_schema, server_url, with_schema


@pytest.fixture
def pg_url():
    with fresh_schema() as url:
        yield url


def raw_chain_ok(url: str) -> int:
    """Independent check of the whole chain from the raw rows: hashes recomputed, links followed."""
    raw = RawPostgres(url)
    try:
        rows = raw.execute("SELECT seq, prev_hash, record_hash, data FROM audits ORDER BY seq").fetchall()
    finally:
        raw.close()
    prev = GENESIS_HASH
    for i, (seq, prev_hash, record_hash, data) in enumerate(rows, start=1):
        obj = json.loads(data)
        claimed = obj.pop("record_hash")
        body = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert seq == i and claimed == record_hash == hashlib.sha256(body.encode()).hexdigest()
        assert prev_hash == obj["prev_hash"] == prev, f"fork or gap at {seq}"
        prev = record_hash
    return len(rows)


def _writer(url: str, worker: int, n: int, barrier, out) -> None:
    store = open_store(url)
    barrier.wait(60)
    acked = [store.append(AuditRecord(request_id=f"w{worker}-{i}", model_id="clean")).audit_id for i in range(n)]
    store.close()
    out.put((worker, acked))


def test_four_processes_of_500_appends_make_one_chain(pg_url):
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(pg_url, w, 500, barrier, out)) for w in range(4)]
    for p in procs:
        p.start()
    acked = dict(out.get(timeout=300) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert raw_chain_ok(pg_url) == 2000
    with open_store(pg_url) as store:
        report = store.verify_chain()
        assert report.ok and report.checked == 2000, report
        assert all(store.get(a) is not None for ids in acked.values() for a in ids[::50])
        order = [r.request_id.split("-")[0] for r in store.query(limit=2000)[0]]
    assert sum(a != b for a, b in zip(order, order[1:])) >= 20  # the writers really interleaved


def test_writers_extend_one_chain_whatever_the_servers_default_isolation(pg_url):
    """A server (or role) whose default isolation is SERIALIZABLE must not make an append read a head
    older than the lock it waited for (a fork, or a clash of sequence numbers)."""
    from urllib.parse import quote

    schema = pg_url.rsplit("search_path%3D", 1)[1]
    url = pg_url.replace(f"options={quote(f'-csearch_path={schema}')}",
                         f"options={quote(f'-csearch_path={schema} -cdefault_transaction_isolation=serializable')}")
    assert url != pg_url
    errors: list[BaseException] = []

    def appends(worker: int) -> None:
        try:
            with open_store(url) as store:
                for i in range(40):
                    store.append(AuditRecord(request_id=f"t{worker}-{i}"))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=appends, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert raw_chain_ok(pg_url) == 160


def test_the_schema_version_table_and_a_newer_schema_refused(pg_url):
    with open_store(pg_url) as store:
        store.append(AuditRecord(request_id="r"))
        assert store.schema_version() == SCHEMA_VERSION
    raw = RawPostgres(pg_url)
    raw.execute("UPDATE auditor_schema SET version = 99")
    raw.close()
    with pytest.raises(StoreError, match="schema version 99, newer"):
        open_store(pg_url)


def test_an_unreachable_server_is_one_clear_error_without_the_password():
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        open_store(f"postgresql://auditor:s3cret@127.0.0.1:{port}/audits", timeout_s=1.0)
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "s3cret" not in message and "***" in message


def test_an_exhausted_pool_spools_instead_of_blocking(pg_url, tmp_path):
    store = open_spooled_store(pg_url, spool_dir=tmp_path / "spool", retry_s=3600, pool_size=1, timeout_s=0.5)
    try:
        held, release = threading.Event(), threading.Event()

        def hog() -> None:  # another thread holds the pool's only connection
            with store.store._conn():
                held.set()
                release.wait(30)

        hogger = threading.Thread(target=hog)
        hogger.start()
        held.wait(10)
        started = time.monotonic()
        waiting = store.append(AuditRecord(request_id="while-exhausted"))
        assert time.monotonic() - started < 5 and waiting.record_hash is None and store.spool.depth() == 1
        release.set()
        hogger.join(10)
        store.flush()  # (or the flusher thread, woken by the append, got there first)
        assert store.spool.depth() == 0 and store.get(waiting.audit_id) is not None and store.verify_chain().ok
    finally:
        store.close()


def test_a_wrong_database_name_is_reported(pg_url):
    base = urlsplit(server_url())
    url = base._replace(path="/no_such_database_here").geturl()
    with pytest.raises(StoreUnavailable, match="no_such_database_here"):
        open_store(url, timeout_s=2.0)


# -- the spool ----------------------------------------------------------------------------------
class FlakyStore:
    """A store that can be switched off; remembers what it stored, in order."""

    def __init__(self) -> None:
        self.up = True
        self.records: list[AuditRecord] = []

    def append(self, record: AuditRecord) -> AuditRecord:
        if not self.up:
            raise StoreUnavailable("down")
        if any(r.audit_id == record.audit_id for r in self.records):
            raise ValueError("duplicate")
        self.records.append(record)
        return record

    def close(self) -> None: ...


def spool_metrics(registry: CollectorRegistry) -> dict[str, float]:
    return {name: registry.get_sample_value(f"interaction_auditor_store_spool_{name}", {"model": "m"})
            for name in ("depth", "flushed_total", "dropped_total")}


def test_spool_keeps_order_bounds_itself_and_counts(tmp_path):
    registry = CollectorRegistry()
    telemetry = AuditorTelemetry("m", registry)
    backend = FlakyStore()
    store = SpoolingStore(backend, Spool(tmp_path / "spool", max_records=3), telemetry, background=False)
    try:
        store.append(AuditRecord(request_id="a"))
        backend.up = False
        acked = [store.append(AuditRecord(request_id=x)).request_id for x in "bcd"]
        assert len(list((tmp_path / "spool").glob("*.json"))) == 3
        with pytest.raises(StoreUnavailable, match="full"):
            store.append(AuditRecord(request_id="e"))
        assert spool_metrics(registry) == {"depth": 3, "flushed_total": 0, "dropped_total": 1}
        backend.up = True
        late = store.append(AuditRecord(request_id="f"))  # full spool: flushed first, then queued behind
        assert late.prev_hash is None and store.spool.depth() == 1 and store.flush() == 1
        assert [r.request_id for r in backend.records] == ["a", *acked, "f"]
        assert spool_metrics(registry) == {"depth": 0, "flushed_total": 4, "dropped_total": 1}
    finally:
        store.close()


def test_a_spool_left_by_a_dead_process_is_flushed_once(tmp_path):
    backend = FlakyStore()
    spool = Spool(tmp_path / "spool")
    records = [AuditRecord(request_id=f"r{i}") for i in range(3)]
    for r in records:
        spool.put(r)
    backend.append(records[0])  # stored, but the process died before deleting its spool file
    store = SpoolingStore(backend, Spool(tmp_path / "spool"), retry_s=0.05)  # the next process
    try:
        deadline = time.monotonic() + 10
        while spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert spool.depth() == 0
        assert [r.audit_id for r in backend.records] == [r.audit_id for r in records]  # once each, in order
    finally:
        store.close()


def test_an_unreadable_spool_file_is_set_aside_and_blocks_nothing(tmp_path):
    backend = FlakyStore()
    spool = Spool(tmp_path / "spool")
    spool.put(AuditRecord(request_id="good-1"))
    (tmp_path / "spool" / "00000000000000000001-1-00000000.json").write_text("{not json")  # sorts first
    spool.put(AuditRecord(request_id="good-2"))
    store = SpoolingStore(backend, spool, background=False)
    try:
        assert store.flush() == 2
        assert [r.request_id for r in backend.records] == ["good-1", "good-2"]
        assert [p.suffix for p in (tmp_path / "spool").iterdir() if not p.name.startswith(".")] == [".bad"]
    finally:
        store.close()


@pytest.mark.slow
def test_a_network_cut_mid_stream_loses_nothing_acknowledged(pg_url, tmp_path):
    parts = urlsplit(server_url())
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    schema = pg_url.rsplit("search_path%3D", 1)[1]
    url = with_schema(proxy.url(server_url()), schema)
    registry = CollectorRegistry()
    store = open_spooled_store(url, spool_dir=tmp_path / "spool", telemetry=AuditorTelemetry("m", registry),
                               retry_s=0.2, timeout_s=1.0)  # fail over to the spool within a second
    acked: list[str] = []
    stop = threading.Event()

    def audits() -> None:
        i = 0
        while not stop.is_set():
            acked.append(store.append(AuditRecord(request_id=f"r{i}", model_id="clean")).audit_id)
            i += 1
            time.sleep(0.01)

    writer = threading.Thread(target=audits)
    try:
        writer.start()
        deadline = time.monotonic() + 30
        while len(acked) < 5 and time.monotonic() < deadline:  # the stream is flowing
            time.sleep(0.05)
        proxy.cut()
        cut_at = len(acked)
        time.sleep(3.0)
        spooled = store.spool.depth()
        proxy.restore()
        time.sleep(1.0)
        stop.set()
        writer.join(30)
        deadline = time.monotonic() + 60
        while store.spool.depth() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cut_at >= 5 and spooled > 0, (cut_at, spooled)
        assert store.spool.depth() == 0
        metrics = spool_metrics(registry)
        assert metrics["depth"] == 0 and metrics["dropped_total"] == 0 and metrics["flushed_total"] >= spooled
    finally:
        stop.set()
        store.close()
        proxy.close()
    with open_store(pg_url) as direct:
        stored = [r.audit_id for r in direct.query(limit=10_000)[0]]
        assert direct.verify_chain().ok
    assert stored == acked  # every acknowledged record, once, in the order the audits finished
    assert raw_chain_ok(pg_url) == len(acked)


def test_a_bad_store_url_at_start_is_one_error_naming_the_setting_and_loses_nothing(tmp_path, caplog):
    from auditor.runtime.spool import open_service_store

    with caplog.at_level("ERROR", logger="auditor.runtime.spool"):
        store = open_service_store("mysql://auditor:pw@db/audits", spool_dir=tmp_path / "spool", retry_s=3600)
    try:
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "AUDITOR_STORE_URL" in errors[0] and "pw" not in errors[0]
        kept = store.append(AuditRecord(request_id="while-misconfigured"))  # the service keeps going
        assert store.spool.depth() == 1 and kept.record_hash is None
        with pytest.raises(StoreUnavailable, match="AUDITOR_STORE_URL"):
            store.count()
    finally:
        store.close()
    # fixed and restarted: the spool left behind goes into the right store
    fixed = open_service_store(f"sqlite:///{tmp_path}/a.sqlite", spool_dir=tmp_path / "spool", retry_s=0.05)
    try:
        deadline = time.monotonic() + 10
        while fixed.spool.depth() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fixed.get(kept.audit_id) is not None and fixed.verify_chain().ok
    finally:
        fixed.close()


def test_a_server_down_at_start_is_not_fatal(pg_url, tmp_path):
    from auditor.runtime.spool import open_service_store

    parts = urlsplit(server_url())
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    url = with_schema(proxy.url(server_url()), pg_url.rsplit("search_path%3D", 1)[1])
    proxy.cut()
    try:
        store = open_service_store(url, spool_dir=tmp_path / "spool", retry_s=0.2)
        try:
            first = store.append(AuditRecord(request_id="before"))
            assert store.spool.depth() == 1
            proxy.restore()
            deadline = time.monotonic() + 30
            while store.spool.depth() and time.monotonic() < deadline:
                time.sleep(0.1)
            second = store.append(AuditRecord(request_id="after"))
            assert second.prev_hash is not None  # appended directly once the spool drained
        finally:
            store.close()
    finally:
        proxy.close()
    with open_store(pg_url) as direct:
        assert [r.audit_id for r in direct.query()[0]] == [first.audit_id, second.audit_id]
        assert direct.verify_chain().ok


REPLICA = r"""
import sys, time, itertools
from auditor.runtime.records import AuditRecord
from auditor.runtime.spool import open_service_store
url, spool, name, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
store = open_service_store(url, spool_dir=spool, retry_s=0.2, timeout_s=1.0)
end = time.monotonic() + seconds
for i in itertools.count():
    if time.monotonic() > end:
        break
    r = store.append(AuditRecord(request_id=f"{name}-{i}", model_id="clean"))
    sys.stdout.write(r.audit_id + "\n")  # acknowledged: in the chain or in the spool on disk
    sys.stdout.flush()
    time.sleep(0.005)
while store.spool.depth():
    time.sleep(0.1)
store.close()
"""


@pytest.mark.slow
def test_two_replicas_survive_kill_9_and_a_server_outage_with_one_chain(pg_url, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    parts = urlsplit(server_url())
    proxy = CuttableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    url = with_schema(proxy.url(server_url()), pg_url.rsplit("search_path%3D", 1)[1])
    env = dict(os.environ, PYTHONPATH=str(root))

    def start(name: str, seconds: float) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", REPLICA, url, str(tmp_path / f"spool-{name}"), name,
                                 str(seconds)], stdout=subprocess.PIPE, env=env, cwd=root)

    acked: list[str] = []
    readers = []

    def read(proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            if line.endswith(b"\n"):
                acked.append(line.decode().strip())

    try:
        a, b = start("a", 60), start("b", 8)
        for p in (a, b):
            readers.append(threading.Thread(target=read, args=(p,), daemon=True))
            readers[-1].start()
        time.sleep(3)
        proxy.cut()  # the server unreachable mid-stream, for both replicas
        time.sleep(2.5)
        os.kill(a.pid, signal.SIGKILL)  # replica a dies with records in its spool
        a.wait(10)
        left_by_a = len(list((tmp_path / "spool-a").glob("*.json")))
        proxy.restore()
        b.wait(120)
        assert b.returncode == 0
        a2 = start("a", 1)  # replica a restarted on the same volume: flushes what a left
        readers.append(threading.Thread(target=read, args=(a2,), daemon=True))
        readers[-1].start()
        a2.wait(120)
        assert a2.returncode == 0
        for t in readers:
            t.join(10)
    finally:
        proxy.close()
    assert len(acked) > 100 and left_by_a > 0  # the kill really left acknowledged records in a's spool
    with open_store(pg_url) as store:
        stored = [r.audit_id for r in store.query(limit=10_000)[0]]
        report = store.verify_chain()
    assert report.ok, report
    assert not set(acked) - set(stored)  # every acknowledged record is in the chain
    assert len(stored) == len(set(stored))  # once
    assert raw_chain_ok(pg_url) == len(stored)
    assert not list(tmp_path.glob("spool-*/*.json"))


V1_LAYOUT = (  # the version-1 layout, as the first release of this store wrote it
    "CREATE TABLE auditor_schema (version integer NOT NULL)",
    "CREATE TABLE audits (seq bigint PRIMARY KEY, audit_id text NOT NULL UNIQUE, request_id text NOT NULL,"
    " created_ts double precision NOT NULL, model_id text NOT NULL, outcome text NOT NULL,"
    " sampling_reason text NOT NULL, flagged integer NOT NULL, flags text NOT NULL,"
    " prev_hash text NOT NULL, record_hash text NOT NULL, data text NOT NULL)",
    "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL)",
    "INSERT INTO auditor_schema (version) VALUES (1)",
)


def write_version_1_layout(url: str) -> None:
    raw = RawPostgres(url)
    for stmt in V1_LAYOUT:
        raw.execute(stmt)
    raw.close()


def test_a_failing_migration_leaves_the_version_1_store_unchanged(pg_url, monkeypatch):
    from auditor.runtime import store_postgres

    write_version_1_layout(pg_url)
    monkeypatch.setitem(store_postgres._MIGRATIONS, 1, [
        "CREATE TABLE auditor_secrets (name text PRIMARY KEY, value text NOT NULL)",  # runs...
        "ALTER TABLE no_such_table ADD COLUMN x text",  # ...then this fails: the first must be undone too
    ])
    with pytest.raises(StoreError, match="from schema version 1 to 2 failed"):
        open_store(pg_url)
    raw = RawPostgres(pg_url)
    try:
        assert raw.execute("SELECT version FROM auditor_schema").fetchall() == [(1,)]
        assert raw.execute("SELECT to_regclass('auditor_secrets')").fetchone()[0] is None
    finally:
        raw.close()
    monkeypatch.undo()
    with open_store(pg_url) as store:  # the real migration still works afterwards
        assert store.schema_version() == SCHEMA_VERSION


def test_a_version_1_store_is_migrated_in_place_and_its_chain_still_verifies(pg_url):
    write_version_1_layout(pg_url)
    with open_store(pg_url) as store:  # migrated on open
        assert store.schema_version() == SCHEMA_VERSION == 2
        first = store.append(AuditRecord(request_id="after-migration"))
        assert first.prev_hash == GENESIS_HASH and store.verify_chain().ok
        key = store.get_or_create_secret("sampling_key", "k1")
        assert key == "k1" and store.get_or_create_secret("sampling_key", "k2") == "k1"  # first writer wins
    with open_store(pg_url) as again:  # every replica sees the same secret
        assert again.get_or_create_secret("sampling_key", "k3") == "k1"
