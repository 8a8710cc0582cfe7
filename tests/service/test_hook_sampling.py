"""Issue 17, on the LLM side: the audit hook samples with the store's secret key, so ids a caller
chose offline against the unkeyed hash are sampled at the configured rate (before: 0 of 200).
The key itself is ``auditor.runtime.sampling_key`` (tests/runtime/test_sampling_key.py)."""

from __future__ import annotations

from auditor.runtime.sampling import SamplingSignals, request_uniform
from auditor.runtime.settings import AuditorSettings
from service.hook import AuditHook


def _evasive_ids(rate: float, n: int = 200) -> list[str]:
    """What an attacker computes offline: ids the unkeyed hash never samples at ``rate``."""
    ids, i = [], 0
    while len(ids) < n:
        rid = f"evade-{i}"
        if request_uniform(rid) >= rate:
            ids.append(rid)
        i += 1
    return ids


def test_ids_chosen_offline_are_sampled_at_the_rate_with_the_default_settings(tmp_path):
    settings = AuditorSettings(sample_rate=0.5, store_url=f"sqlite:///{tmp_path / 'audits.sqlite'}",
                               low_confidence_threshold=None, max_audits_per_minute=None)
    assert settings.sampling_key is None  # the default: no key configured
    hook = AuditHook(settings)
    sampled = sum(hook.sampler.decide(SamplingSignals(request_id=rid)).sampled for rid in _evasive_ids(0.5))
    # Binomial(200, 0.5): 100 +- 7; below 60 has probability < 1e-8. Unkeyed, it was 0.
    assert 60 <= sampled <= 140, sampled


def test_no_key_is_read_when_auditing_is_disabled(tmp_path):
    AuditHook(AuditorSettings(audit_enabled=False, store_url=f"sqlite:///{tmp_path / 'a.sqlite'}"))
    assert not (tmp_path / "a.sqlite").exists()
