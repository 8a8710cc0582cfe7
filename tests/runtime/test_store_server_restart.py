"""The PostgreSQL server itself restarted while audits flow: nothing acknowledged is lost.

test_store_fleet.py cuts the network in front of the shared server; here the server goes away for
real (``pg_ctl stop -m fast``: every connection terminated by the server, the port closed, a
checkpoint, then a fresh postmaster), on a throwaway cluster of this test's own
(:func:`tests.postgres.throwaway_cluster`), so the shared server is never touched.

Two "replicas" (two spooled store objects, each with its own spool directory and writer thread, as
two auditor processes have) append continuously before, during and after the outage. Oracles are
independent of the code under test: the ids each writer saw acknowledged, the raw rows' hashes
recomputed (``raw_chain_ok``), the spool files on disk.
"""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from auditor.runtime.records import AuditRecord
from auditor.runtime.spool import open_spooled_store
from auditor.runtime.store import open_store
from auditor.runtime.telemetry import AuditorTelemetry
from tests.postgres import throwaway_cluster
from tests.runtime.test_store_fleet import raw_chain_ok, spool_metrics

pytestmark = pytest.mark.slow  # starts a PostgreSQL cluster of its own (~10 s)


def test_a_server_restart_mid_stream_loses_nothing_acknowledged(tmp_path):
    with throwaway_cluster() as cluster:
        url = cluster.url()
        registries = [CollectorRegistry() for _ in "ab"]
        stores = [open_spooled_store(url, spool_dir=tmp_path / f"spool-{name}", retry_s=0.2, timeout_s=1.0,
                                     telemetry=AuditorTelemetry("m", registry))
                  for name, registry in zip("ab", registries)]
        acked: dict[str, list[str]] = {"a": [], "b": []}
        stop = threading.Event()
        errors: list[BaseException] = []

        def audits(name: str, store) -> None:
            try:
                i = 0
                while not stop.is_set():
                    record = store.append(AuditRecord(request_id=f"{name}-{i}", model_id="clean"))
                    acked[name].append(record.audit_id)  # acknowledged: in the chain or on disk in the spool
                    i += 1
                    time.sleep(0.01)
            except BaseException as error:  # noqa: BLE001 - reported by the test thread below
                errors.append(error)

        writers = [threading.Thread(target=audits, args=(name, store)) for name, store in zip("ab", stores)]
        try:
            for w in writers:
                w.start()
            deadline = time.monotonic() + 30
            while min(map(len, acked.values())) < 10 and time.monotonic() < deadline:  # both flowing
                time.sleep(0.05)
            before = {k: len(v) for k, v in acked.items()}
            cluster.stop("fast")  # the server goes away for real
            down_at = time.monotonic()
            time.sleep(3.0)  # appends go on against a closed port
            during = {k: len(v) - before[k] for k, v in acked.items()}
            spooled = [s.spool.depth() for s in stores]
            cluster.start()
            down_s = time.monotonic() - down_at
            time.sleep(1.5)  # and go on after the restart, behind the spooled records
            stop.set()
            for w in writers:
                w.join(30)
            deadline = time.monotonic() + 60
            while any(s.spool.depth() for s in stores) and time.monotonic() < deadline:
                time.sleep(0.1)
            depth_after = [s.spool.depth() for s in stores]
        finally:
            stop.set()
            for s in stores:
                s.close()
        assert not errors, errors
        assert min(before.values()) >= 10 and min(during.values()) > 0, (before, during)
        assert all(n > 0 for n in spooled), f"nothing spooled while the server was down {down_s:.1f} s: {spooled}"
        assert depth_after == [0, 0], f"spool not drained: {depth_after}\n{cluster.log_tail()}"
        for registry, n in zip(registries, spooled):
            metrics = spool_metrics(registry)
            assert metrics["depth"] == 0 and metrics["dropped_total"] == 0 and metrics["flushed_total"] >= n, metrics
        assert not list(tmp_path.glob("spool-*/*.json"))

        with open_store(url) as direct:
            stored = [r.audit_id for r in direct.query(limit=10_000)[0]]
            report = direct.verify_chain()
        assert report.ok and report.checked == len(stored), report
        assert raw_chain_ok(url) == len(stored)
        assert len(stored) == len(set(stored))  # each record once
        assert sorted(stored) == sorted(acked["a"] + acked["b"])  # every acknowledged record, nothing else
        position = {audit_id: i for i, audit_id in enumerate(stored)}
        for name, ids in acked.items():  # each replica's records in the order its audits finished
            assert [position[a] for a in ids] == sorted(position[a] for a in ids), f"replica {name} reordered"
