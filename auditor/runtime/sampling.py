"""Which served requests get audited.

An audit costs 2^n masked forward passes, so only a sample of live traffic is audited. The sampler
runs in the LLM service after the answer has been sent; it is cheap (one hash, one lock) and
deterministic, so the same request id always gets the same decision on every replica and restart.

Rules, first match wins:

1. ``force`` (compliance staff asked for this request): sampled, reason ``forced``. Forced audits are
   an explicit human request, so they **bypass the per-minute cap and do not use it up**.
2. Boosts from cheap signals available after generation: ``caller_flag`` (the caller marked the
   request), ``labelled`` (the request carries labelled players), ``low_confidence`` (the answer's
   confidence is below ``low_confidence_threshold``). A boosted request is sampled with probability
   ``max(base_rate, boost_rate)``; the reason is the first boost that applies.
3. Otherwise the deterministic base rate: sampled with probability ``base_rate``, reason ``base_rate``.

Inclusion is decided by one stable uniform number per request id, ``u = request_uniform(id)`` in
[0, 1) (blake2b of the UTF-8 id, optionally keyed; never Python's salted ``hash()``): the request is
sampled iff ``u < p``. Because the same ``u`` serves every rule, a request sampled at the base rate
is also sampled when boosted, and raising a rate only ever adds requests.

Sampled requests (other than forced ones) then pass the per-minute cap: a sliding 60-second window
of admitted audits per sampler (one sampler per model, so the cap is per model). When the window is
full the decision is ``sampled=False`` with reason ``rate_capped``. Not-sampled requests get reason
``not_sampled``. These reason strings are exactly the label values of
``interaction_auditor_sampling_decisions_total`` (docs/metrics-spec.md).

Weighting back to the population
--------------------------------
Every decision carries ``probability``, the design inclusion probability p of the rule that applied
(1 for forced, ``max(base_rate, boost_rate)`` for boosts, ``base_rate`` otherwise). A sampled
request stands for ``1 / p`` requests of its stratum (Horvitz-Thompson). When the cap drops audits,
the realised probability is lower by the factor ``1 - c``, where ``c`` is the share of would-be
audits that were capped in the same window; for the dashboards
``c = rate(..._total{reason="rate_capped"}) / (rate(..._total{reason="rate_capped"}) +
rate(sampled reasons except forced))``. :func:`inverse_probability_weight` returns
``1 / (p (1 - c))``. A population estimate of a per-audit metric x is ``sum(w x) / sum(w)`` over the
audited requests. Forced and caller-flagged audits are certainty units (p = 1 at the default
boost rate) chosen by people, not by chance: report them next to, not inside, population estimates.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "SAMPLED_REASONS",
    "NOT_SAMPLED_REASONS",
    "REASONS",
    "SamplingSignals",
    "SamplingDecision",
    "Sampler",
    "request_uniform",
    "inverse_probability_weight",
]

SAMPLED_REASONS: tuple[str, ...] = ("forced", "caller_flag", "labelled", "low_confidence", "base_rate")
NOT_SAMPLED_REASONS: tuple[str, ...] = ("not_sampled", "rate_capped")
REASONS: tuple[str, ...] = SAMPLED_REASONS + NOT_SAMPLED_REASONS

_WINDOW_SECONDS = 60.0
_PERSON = b"ia-sampler-v1"  # domain separation: changing it re-draws every request's sample


def request_uniform(request_id: str, key: bytes | str | None = None) -> float:
    """Stable uniform number in [0, 1) for a request id (the same in every process and run).

    blake2b-64 of the UTF-8 id (keyed when ``key`` is given, so clients who choose their own
    request ids cannot predict which ones are audited); the top 53 bits divided by 2^53, which is
    exactly representable and strictly below 1.
    """
    if not isinstance(request_id, str):
        raise TypeError("request_id must be a str")
    if isinstance(key, str):
        key = key.encode("utf-8")
    if key and len(key) > 64:  # blake2b takes keys of up to 64 bytes
        key = hashlib.sha256(key).digest()
    h = hashlib.blake2b(request_id.encode("utf-8"), digest_size=8, key=key or b"", person=_PERSON)
    return (int.from_bytes(h.digest(), "big") >> 11) / float(1 << 53)


@dataclass(frozen=True, slots=True)
class SamplingSignals:
    """Cheap per-request signals known after generation.

    ``answer_confidence`` is on the same scale as the sampler's ``low_confidence_threshold`` (e.g.
    the mean answer-token probability); None or NaN means unknown and never boosts.
    """

    request_id: str
    answer_confidence: float | None = None
    caller_flag: bool = False
    labelled: bool = False
    force: bool = False


@dataclass(frozen=True, slots=True)
class SamplingDecision:
    """``sampled`` and the ``reason`` label (one of :data:`REASONS`); ``probability`` is the design
    inclusion probability of the rule that applied (see :func:`inverse_probability_weight`)."""

    sampled: bool
    reason: str
    probability: float = 1.0

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown sampling reason {self.reason!r}; expected one of {REASONS}")
        if self.sampled != (self.reason in SAMPLED_REASONS):
            raise ValueError(f"reason {self.reason!r} contradicts sampled={self.sampled}")
        if not (0.0 <= self.probability <= 1.0):
            raise ValueError("probability must be in [0, 1]")

    @property
    def weight(self) -> float:
        """Inverse-probability weight ignoring caps (0 for requests not audited)."""
        return inverse_probability_weight(self)


def inverse_probability_weight(decision: SamplingDecision, capped_fraction: float = 0.0) -> float:
    """How many served requests one audited request stands for: ``1 / (p * (1 - capped_fraction))``.

    ``capped_fraction`` is the share of would-be audits dropped by the per-minute cap over the
    window being estimated (0 when the cap did not bite). Returns 0.0 for requests that were not
    audited, so weights can be summed over all decisions.
    """
    if not (0.0 <= capped_fraction < 1.0):
        raise ValueError("capped_fraction must be in [0, 1)")
    if not decision.sampled:
        return 0.0
    if decision.reason == "forced":
        return 1.0  # certainty unit; forced audits bypass the cap
    p = decision.probability * (1.0 - capped_fraction)
    if p <= 0.0:
        raise ValueError("a sampled decision cannot have probability 0")
    return 1.0 / p


def _check_rate(name: str, value: float) -> float:
    value = float(value)
    if not (0.0 <= value <= 1.0):  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


class Sampler:
    """Thread-safe, deterministic audit sampler for one model (see the module docstring).

    ``max_per_minute``: None for no cap; otherwise at most this many non-forced audits start in any
    60-second window of ``clock`` (seconds, monotonic).
    """

    def __init__(
        self,
        base_rate: float,
        low_confidence_threshold: float | None = None,
        boost_rate: float = 1.0,
        max_per_minute: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        *,
        key: bytes | str | None = None,
    ) -> None:
        self.base_rate = _check_rate("base_rate", base_rate)
        self.boost_rate = _check_rate("boost_rate", boost_rate)
        if low_confidence_threshold is not None:
            low_confidence_threshold = float(low_confidence_threshold)
            if math.isnan(low_confidence_threshold):
                raise ValueError("low_confidence_threshold must not be NaN")
        self.low_confidence_threshold = low_confidence_threshold
        if max_per_minute is not None:
            if isinstance(max_per_minute, bool) or int(max_per_minute) != max_per_minute or max_per_minute < 0:
                raise ValueError(f"max_per_minute must be a non-negative integer or None, got {max_per_minute!r}")
            max_per_minute = int(max_per_minute)
        self.max_per_minute = max_per_minute
        self._clock = clock
        self._key = key
        self._lock = threading.Lock()
        self._admitted: deque[float] = deque()

    def _boost_reason(self, s: SamplingSignals) -> str | None:
        if s.caller_flag:
            return "caller_flag"
        if s.labelled:
            return "labelled"
        c = s.answer_confidence
        if (
            self.low_confidence_threshold is not None
            and c is not None
            and not math.isnan(float(c))
            and float(c) < self.low_confidence_threshold
        ):
            return "low_confidence"
        return None

    def _admit(self) -> bool:
        """Take one slot of the sliding window; False when the window is full."""
        if self.max_per_minute is None:
            return True
        with self._lock:
            now = self._clock()
            window = self._admitted
            while window and now - window[0] >= _WINDOW_SECONDS:
                window.popleft()
            if len(window) >= self.max_per_minute:
                return False
            window.append(now)
            return True

    def decide(self, signals: SamplingSignals) -> SamplingDecision:
        if signals.force:
            return SamplingDecision(True, "forced", 1.0)
        reason = self._boost_reason(signals)
        if reason is None:
            reason, p = "base_rate", self.base_rate
        else:
            p = max(self.base_rate, self.boost_rate)
        if p <= 0.0 or request_uniform(signals.request_id, self._key) >= p:
            return SamplingDecision(False, "not_sampled", p)
        if not self._admit():
            return SamplingDecision(False, "rate_capped", p)
        return SamplingDecision(True, reason, p)
