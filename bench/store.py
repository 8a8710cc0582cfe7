"""The audit store: append throughput and latency, SQLite vs PostgreSQL, 1 and N writer processes;
time to verify a long chain on each (issue 20).

Each writer process opens its own store object (as each replica does) and appends realistic records
(a few KiB of JSON: players, salient terms, metrics) as fast as it can; every append is durable when
it returns (SQLite: WAL + fsync; PostgreSQL: synchronous_commit on). Latency is per append, pooled
over the writers. Verification reads the whole chain once and recomputes every hash.

    python bench/store.py                                  # 1 and 4 writers, 2,000 appends each; verify 100,000
    python bench/store.py --appends 500 --verify-records 20000 --json
    python bench/store.py --postgres postgresql://user@host:5432/db
        # default server: $AUDITOR_TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test

PostgreSQL runs in a schema of its own (created and dropped here); SQLite in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.runtime.records import AuditRecord  # noqa: E402
from auditor.runtime.store import open_store  # noqa: E402


def record(i: int, writer: int) -> AuditRecord:
    return AuditRecord(
        request_id=f"w{writer}-{i}", model_id="clean", sampling_reason="base_rate", sampling_probability=0.05,
        settings={"n_players": 10, "answer_tokens": 16, "qthres": 0.04, "mode": "and-or"},
        prompt="[p0:relevant] struck [p1:irrelevant] with a knife; what is [p0:relevant] charged with?",
        answer="assault",
        players=[{"index": k, "text": f"[p{k}:relevant]", "label": "relevant", "group": None,
                  "char_start": 10 * k, "char_end": 10 * k + 5} for k in range(10)],
        salient=[{"kind": "and", "players": [k, k + 1], "order": 2, "value": 0.1 * k} for k in range(8)],
        metrics={"sparsity": 12, "overfitting": 0.2, "misattribution": 0.1, "cancellation": 0.3,
                 "order_profile": {"positive": [0.5] * 10, "negative": [0.1] * 10}},
        cost={"forward_passes": 1024, "tokens_computed": 90_000, "seconds": 2.5, "device": "cpu"})


def _writer(url: str, writer: int, n: int, barrier, out) -> None:
    store = open_store(url)
    records = [record(i, writer) for i in range(n)]
    barrier.wait(120)
    latencies = []
    for r in records:
        t0 = time.perf_counter()
        store.append(r)
        latencies.append(time.perf_counter() - t0)
    store.close()
    out.put(latencies)


def appends(url: str, writers: int, n: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, w, n, barrier, out)) for w in range(writers)]
    for p in procs:
        p.start()
    barrier.wait(120)
    t0 = time.perf_counter()
    latencies = [x for _ in procs for x in out.get(timeout=3600)]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join(60)
    latencies.sort()
    with open_store(url) as store:
        assert store.verify_chain().ok
    return {"appends": len(latencies), "seconds": elapsed, "appends_per_s": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


_COLUMNS = ("seq, audit_id, request_id, created_ts, model_id, outcome, sampling_reason, flagged, flags, prev_hash, "
            "record_hash, data")


def fill(sqlite_url: str, pg_url: str, n: int) -> dict[str, float]:
    """The verify benchmark's chain of ``n`` records, the same in both stores.

    Appended once, by one writer, through the SQLite store's own ``append`` (``synchronous=NORMAL``:
    the fsync per append is what the append benchmark measures, not this one), then copied row for
    row (COPY) into the PostgreSQL store's tables with its chain head, so the second backend does
    not pay the fill again (minutes for 100,000 records on 2 busy cores: validation and hashing per
    record) and both verify the same records. A chain is the same rows on either backend;
    ``verify`` asserts that each store finds it intact."""
    import psycopg
    import sqlite3

    seconds = {}
    t0 = time.perf_counter()
    with open_store(sqlite_url, synchronous="NORMAL") as store:
        for i in range(n):
            store.append(record(i, 0))
    seconds["sqlite_fill_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    open_store(pg_url).close()  # the PostgreSQL layout
    src = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"))
    try:
        head_hash, head_seq = src.execute("SELECT record_hash, seq FROM audits ORDER BY seq DESC LIMIT 1").fetchone()
        with psycopg.connect(pg_url) as conn, conn.transaction():
            with conn.cursor().copy(f"COPY audits ({_COLUMNS}) FROM STDIN") as copy:
                for row in src.execute(f"SELECT {_COLUMNS} FROM audits ORDER BY seq"):
                    copy.write_row(row)
            conn.execute("INSERT INTO meta (key, value) VALUES ('head_hash', %s), ('head_seq', %s) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (head_hash, str(head_seq)))
    finally:
        src.close()
    seconds["postgres_copy_s"] = time.perf_counter() - t0
    return seconds


def verify(url: str) -> dict[str, float]:
    with open_store(url) as store:
        t0 = time.perf_counter()
        report = store.verify_chain()
        seconds = time.perf_counter() - t0
    assert report.ok
    return {"records": report.checked, "seconds": seconds, "records_per_s": report.checked / seconds}


class Postgres:
    """A fresh schema per measurement on the server at ``base``."""

    def __init__(self, base: str) -> None:
        import psycopg

        self.base, self.psycopg = base, psycopg
        self.schemas: list[str] = []

    def url(self) -> str:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        with self.psycopg.connect(self.base, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        self.schemas.append(schema)
        sep = "&" if "?" in self.base else "?"
        return f"{self.base}{sep}options={quote(f'-csearch_path={schema}')}"

    def drop(self) -> None:
        with self.psycopg.connect(self.base, autocommit=True) as conn:
            for schema in self.schemas:
                conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=2000, help="appends per writer process (default 2000)")
    parser.add_argument("--writers", type=int, nargs="+", default=[1, 4], help="writer counts (default 1 4)")
    parser.add_argument("--verify-records", type=int, default=100_000,
                        help="chain length to verify on each backend (default 100000)")
    parser.add_argument("--postgres", default=os.environ.get("AUDITOR_TEST_POSTGRES_URL",
                                                             "postgresql://postgres@127.0.0.1:5432/test"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    pg = Postgres(args.postgres)
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    results: dict[str, dict] = {"sqlite": {}, "postgres": {}}
    try:
        for writers in args.writers:
            results["sqlite"][f"{writers}_writers"] = appends(f"sqlite:///{tmp}/w{writers}.sqlite", writers,
                                                              args.appends)
            results["postgres"][f"{writers}_writers"] = appends(pg.url(), writers, args.appends)
        chain = {"sqlite": f"sqlite:///{tmp}/verify.sqlite", "postgres": pg.url()}
        results["fill"] = fill(chain["sqlite"], chain["postgres"], args.verify_records)
        for name, url in chain.items():
            results[name]["verify"] = verify(url)
            assert results[name]["verify"]["records"] == args.verify_records
    finally:
        pg.drop()
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    if args.json:
        print(json.dumps({"machine": machine, "appends_per_writer": args.appends, "results": results}))
        return
    print(f"machine: {machine['cpus']} CPUs, {machine['platform']}; {args.appends} appends per writer")
    print(f"{'':34}{'SQLite':>14}{'PostgreSQL':>14}{'PG/SQLite':>11}")
    for writers in args.writers:
        key = f"{writers}_writers"
        for label, field, fmt in (("appends/s", "appends_per_s", "{:.0f}"), ("p50 append ms", "p50_ms", "{:.2f}"),
                                  ("p99 append ms", "p99_ms", "{:.2f}")):
            s, p = results["sqlite"][key][field], results["postgres"][key][field]
            print(f"{f'{writers} writer(s): {label}':34}{fmt.format(s):>14}{fmt.format(p):>14}{p / s:>10.2f}x")
    s, p = results["sqlite"]["verify"], results["postgres"]["verify"]
    label = f"verify {s['records']:,} records: s"
    print(f"{label:34}{s['seconds']:>14.2f}{p['seconds']:>14.2f}{p['seconds'] / s['seconds']:>10.2f}x")
    filled = results["fill"]
    print(f"{'(fill: SQLite appends / PG COPY) s':34}{filled['sqlite_fill_s']:>14.1f}"
          f"{filled['postgres_copy_s']:>14.1f}")
    print(f"{'verify: records/s':34}{s['records_per_s']:>14.0f}{p['records_per_s']:>14.0f}"
          f"{p['records_per_s'] / s['records_per_s']:>10.2f}x")
    target = results["postgres"].get("4_writers", {}).get("appends_per_s")
    if target is not None:
        print(f"target >= 200 appends/s with 4 writers on PostgreSQL: {target:.0f}/s, "
              f"{'MET' if target >= 200 else 'NOT MET'}")


if __name__ == "__main__":
    main()
