"""Issue 17: callers cannot choose request ids that are never audited.

Before: with ``AUDITOR_SAMPLING_KEY`` unset the sampler hashed ids unkeyed, a public function, so ids
chosen offline (``request_uniform(id) >= rate``) were never sampled (0 of 200). Now a secret key is
generated at first start and kept with the store. Oracle: the unkeyed ``request_uniform`` the
attacker computes, and a binomial bound on how many of the chosen ids a secret key samples.
"""

from __future__ import annotations

import sqlite3

from auditor.runtime.sampling_key import ensure_sampling_key


def test_the_generated_key_is_kept_with_the_store_and_stable(tmp_path):
    url = f"sqlite:///{tmp_path / 'audits.sqlite'}"
    first = ensure_sampling_key(url)
    assert len(first) == 64 and first == ensure_sampling_key(url)  # a restart, or another replica
    assert ensure_sampling_key(f"sqlite:///{tmp_path / 'other.sqlite'}") != first  # random per store
    with sqlite3.connect(tmp_path / "audits.sqlite") as conn:
        stored = conn.execute("SELECT value FROM auditor_secrets WHERE name = 'sampling_key'").fetchone()[0]
    assert stored.encode() == first
    assert ensure_sampling_key(url, b"configured") == b"configured"  # AUDITOR_SAMPLING_KEY wins


def test_the_key_lives_beside_the_audit_store_tables(tmp_path):
    from auditor.runtime.store import open_store

    url = f"sqlite:///{tmp_path / 'audits.sqlite'}"
    store = open_store(url)
    key = ensure_sampling_key(url)
    store.close()
    again = open_store(url)
    try:
        assert again.count() == 0 and ensure_sampling_key(url) == key
    finally:
        again.close()


def test_a_postgres_store_keeps_one_key_for_every_replica():
    """Each LLM replica opens the fleet store by URL and gets the same key (created once)."""
    from postgres import fresh_schema

    with fresh_schema() as url:
        first = ensure_sampling_key(url)
        again = ensure_sampling_key(url)  # a second replica, a restart
        assert first == again and len(first) == 64
        assert ensure_sampling_key(url, b"configured") == b"configured"


def test_an_unreachable_store_still_gives_an_unpredictable_key(caplog):
    url = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    keys = {ensure_sampling_key(url) for _ in range(2)}
    assert len(keys) == 2 and all(len(k) == 64 for k in keys)  # random per process, never a constant
