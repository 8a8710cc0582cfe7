"""One write-ahead journal per Auditor worker process (service/auditor.py ``_journal``): a worker
recovers (and so cancels) every job in its journal at start, so with ``AUDITOR_AUDITOR_WORKERS`` > 1
a shared file would cancel a sibling's accepted jobs. No server: the function is called directly with
BentoML's worker index set as ``bentoml serve`` sets it."""

from __future__ import annotations

import bentoml

from auditor.runtime.settings import AuditorSettings


def test_each_worker_keeps_its_own_journal_and_one_worker_keeps_the_plain_path(tmp_path, monkeypatch):
    from service.auditor import _journal

    store = f"sqlite:///{tmp_path}/audits.sqlite"
    paths = {}
    for workers, index in ((1, 1), (2, 1), (2, 2)):
        monkeypatch.setattr(bentoml.server_context, "worker_index", index)
        journal = _journal(AuditorSettings(store_url=store, auditor_workers=workers))
        paths[workers, index] = journal.path.name
        journal.close()
    assert paths == {(1, 1): "audits.sqlite.jobs", (2, 1): "audits.sqlite.jobs.1", (2, 2): "audits.sqlite.jobs.2"}

    # worker 2 restarting recovers its own unfinished job, and worker 1's journal keeps worker 1's
    monkeypatch.setattr(bentoml.server_context, "worker_index", 1)
    first = _journal(AuditorSettings(store_url=store, auditor_workers=2))
    first.accepted("job-of-worker-1", None)
    monkeypatch.setattr(bentoml.server_context, "worker_index", 2)
    second = _journal(AuditorSettings(store_url=store, auditor_workers=2))
    second.accepted("job-of-worker-2", None)
    assert [j["id"] for j in second.recover()] == ["job-of-worker-2"]
    assert [j["id"] for j in first.recover()] == ["job-of-worker-1"]
    first.close()
    second.close()


def test_a_server_store_has_no_journal_whatever_the_workers(monkeypatch):
    from service.auditor import _journal

    monkeypatch.setattr(bentoml.server_context, "worker_index", 2)
    assert _journal(AuditorSettings(store_url="postgresql://u@h/db", auditor_workers=2)) is None
