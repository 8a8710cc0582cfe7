"""Prometheus metrics of the auditor (names, labels and buckets of docs/metrics-spec.md).

Plain ``prometheus_client``; this library never imports bentoml.

How this works under BentoML 1.4 (read in the installed sources, bentoml 1.4.39):

- ``bentoml serve`` (``_bentoml_impl/server/serving.py``, ``serve_http``) creates one directory
  with ``bentoml.serving.ensure_prometheus_dir()`` (emptied at every start) and passes
  ``PROMETHEUS_MULTIPROC_DIR=<dir>`` in the environment of every worker it spawns, including the
  processes of ``bentoml.depends`` dependencies (``dependency_env = env.copy()``). Workers are new
  interpreters started by circus, so the variable is set before anything imports
  ``prometheus_client``; the LLM service and the auditor service write to the same directory.
- ``prometheus_client.values.ValueClass`` is chosen **once, when prometheus_client is imported**
  (``values.py``: ``ValueClass = get_value_class()``): with the variable set, every metric value
  is an mmap'ed file ``<type>_<pid>.db`` in that directory; without it, a process-local value.
  Metrics are read through ``values.ValueClass`` when each metric (child) is created.
- Each service's ``/metrics`` (``_bentoml_impl/server/app.py`` -> ``BentoMLContainer.metrics_client``,
  ``bentoml/_internal/server/metrics/prometheus.py``, ``PrometheusClient.generate_latest``) builds a
  fresh ``CollectorRegistry`` with a ``MultiProcessCollector`` over that directory. So only
  file-backed values are exported: metrics made with plain ``prometheus_client`` appear on every
  service's ``/metrics``, summed over processes (gauges per their ``multiprocess_mode``), whichever
  registry they were registered with. Info and Enum metrics and custom collectors are not supported
  by multiprocess mode (prometheus_client README, "Multiprocess Mode").
- ``bentoml.metrics`` is now a deprecated lazy alias of ``prometheus_client`` (``bentoml/metrics.py``;
  bentoml PR #5602 fixed histograms lost because an early import of prometheus_client fixed the value
  class before the variable was set, issue #5056). It adds nothing we need.

So: create the metrics with plain prometheus_client, never Info/Enum, gauges with an explicit
``multiprocess_mode``; and guard against the one failure mode, prometheus_client imported before
``PROMETHEUS_MULTIPROC_DIR`` was set (e.g. by a test harness or an embedding app):
:class:`AuditorTelemetry` then switches ``values.ValueClass`` to the multiprocess class (the same
switch prometheus_client's own tests make) and logs a warning, before creating any metric.

Label values are never user text: ``model`` is the operator's configured name (validated, fixed per
telemetry object), ``reason``/``outcome``/``stage``/``sign`` come from fixed sets (anything else is a
``ValueError``), ``order`` is 1..16 and ``version`` is a validated version string. ``label`` is a
player label (``relevant``, ``irrelevant``, ``forbidden``, ``unlabelled``: the fixed set of
``auditor.game.players.LABELS``, never a segment id or text) and ``level`` is ``coarse`` or ``words``.

Misattribution by label: the record keeps every player's label and every salient term's players
and strength, so the exporter splits each labelled audit's salient strength by label without
touching the metrics. Each term goes to the most severe label among its players (forbidden, then
irrelevant, then unlabelled, then relevant): the four shares of one audit sum to 1, and the
forbidden and irrelevant shares add up to the audit's misattribution score (a term is unreliable when
any of its players is; exactly, as long as the record keeps all salient terms: it keeps up to 512). ``label_strength_share_total`` sums those shares and
``label_audits_total`` counts the audits that gave them, so their rates' ratio is the mean share per
label; ``level`` keeps the passage/segment game (``coarse``) apart from word players (a words
audit, or the refinement game of a coarse-to-fine audit).

Creating :class:`AuditorTelemetry` again in the same process reuses the metric objects already
registered in that registry (module-level cache keyed by registry), so it never fails with a
duplicate-registration error.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import values as _values

from auditor.game.granularity import COARSE
from auditor.game.players import LABELS

from .failures import ERROR_STAGES
from .records import FLAG_REASONS, OUTCOMES, AuditRecord
from .sampling import REASONS as SAMPLING_REASONS

__all__ = [
    "PREFIX",
    "SCORE_BUCKETS",
    "SPARSITY_BUCKETS",
    "DURATION_BUCKETS",
    "FORWARD_PASS_BUCKETS",
    "DROP_REASONS",
    "ERROR_STAGES",
    "MAX_ORDER",
    "LEVELS",
    "SEVERITY",
    "label_shares",
    "AuditorTelemetry",
    "multiprocess_enabled",
    "exposition",
]

log = logging.getLogger(__name__)

PREFIX = "interaction_auditor_"
SCORE_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SPARSITY_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 150, 200, 500, 1000)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
FORWARD_PASS_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)
DROP_REASONS = ("queue_full", "handoff_error", "shutdown")  # shutdown: refused while the auditor stops
SIGNS = ("positive", "negative")
MAX_ORDER = 16
LEVELS = ("coarse", "words")
SEVERITY = ("forbidden", "irrelevant", "unlabelled", "relevant")
"""Player labels, most severe first: a salient term is counted under the first label any of its players has."""
assert sorted(SEVERITY) == sorted(LABELS), "every player label needs a severity"

_MODEL_RE = re.compile(r"^[A-Za-z0-9_.:/@+\-]{1,200}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9_.+\-]{1,64}$")
_MP_ENV = ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")


def multiprocess_enabled() -> bool:
    return any(os.environ.get(k) for k in _MP_ENV)


def _ensure_value_class() -> None:
    """If PROMETHEUS_MULTIPROC_DIR is set but prometheus_client was imported before it was, switch
    to file-backed values (otherwise the metrics would be invisible to MultiProcessCollector)."""
    if multiprocess_enabled() and _values.ValueClass is _values.MutexValue:
        log.warning("prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set; "
                    "switching to multiprocess values so the auditor's metrics reach /metrics")
        _values.ValueClass = _values.MultiProcessValue()


class _Metrics:
    """The metric families, created once per registry (and value class)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.value_class = _values.ValueClass
        r = registry
        p = PREFIX
        self.build_info = Gauge(p + "build_info", "What is running (always 1).", ["version", "model"],
                                registry=r, multiprocess_mode="max")
        self.sampling_decisions = Counter(p + "sampling_decisions", "Sampling decisions, one per served request.",
                                          ["model", "reason"], registry=r)
        self.audits_dropped = Counter(p + "audits_dropped", "Sampled audits that were not queued.",
                                      ["model", "reason"], registry=r)
        self.queue_depth = Gauge(p + "queue_depth", "Audits waiting in the queue.", ["model"], registry=r,
                                 multiprocess_mode="livesum")
        self.audits = Counter(p + "audits", "Finished audits by outcome.", ["model", "outcome"], registry=r)
        self.audit_duration = Histogram(p + "audit_duration_seconds",
                                        "Wall time of one audit (scoring, solving, metrics).", ["model"],
                                        registry=r, buckets=DURATION_BUCKETS)
        self.forward_passes = Histogram(p + "audit_forward_passes", "Masked forward passes (sequences) per audit.",
                                        ["model"], registry=r, buckets=FORWARD_PASS_BUCKETS)
        self.overfitting = Histogram(p + "overfitting_score", "Spindle (non-generalizable) share per audit.",
                                     ["model"], registry=r, buckets=SCORE_BUCKETS)
        self.misattribution = Histogram(p + "misattribution_score",
                                        "Unreliable salient strength share per labelled audit.", ["model"],
                                        registry=r, buckets=SCORE_BUCKETS)
        self.sparsity = Histogram(p + "sparsity", "Salient interactions per audit.", ["model"], registry=r,
                                  buckets=SPARSITY_BUCKETS)
        self.cancellation = Histogram(p + "cancellation_ratio", "2 min(P,Q)/(P+Q) of salient strength per audit.",
                                      ["model"], registry=r, buckets=SCORE_BUCKETS)
        self.order_strength = Counter(p + "order_strength", "Summed normalised salient strength by order and sign.",
                                      ["model", "order", "sign"], registry=r)
        self.flagged = Counter(p + "flagged_audits", "Audits flagged, by reason.", ["model", "reason"], registry=r)
        self.label_share = Counter(p + "label_strength_share",
                                   "Per labelled audit, the share of salient strength resting on each player label "
                                   "(most severe label of a term's players), summed.", ["model", "level", "label"],
                                   registry=r)
        self.label_audits = Counter(p + "label_audits", "Labelled audits counted in label_strength_share_total.",
                                    ["model", "level"], registry=r)
        self.last_success = Gauge(p + "last_success_timestamp_seconds", "Unix time of the last successful audit.",
                                  ["model"], registry=r, multiprocess_mode="max")
        self.errors = Counter(p + "errors", "Errors by pipeline stage.", ["model", "stage"], registry=r)
        # the outage spool (auditor.runtime.spool): livemax, as the workers of one replica share a directory
        self.spool_depth = Gauge(p + "store_spool_depth", "Audit records waiting in the local spool for the store.",
                                 ["model"], registry=r, multiprocess_mode="livemax")
        self.spool_flushed = Counter(p + "store_spool_flushed", "Spooled audit records appended to the store.",
                                     ["model"], registry=r)
        self.spool_dropped = Counter(p + "store_spool_dropped", "Audit records lost: store down and spool full.",
                                     ["model"], registry=r)

    def collectors(self) -> list[Any]:
        return [v for v in vars(self).values() if hasattr(v, "collect")]

    def unregister(self, registry: CollectorRegistry) -> None:
        for c in self.collectors():
            try:
                registry.unregister(c)
            except KeyError:
                pass


_CACHE: "weakref.WeakKeyDictionary[CollectorRegistry, _Metrics]" = weakref.WeakKeyDictionary()
_CACHE_LOCK = threading.Lock()


def _metrics_for(registry: CollectorRegistry) -> _Metrics:
    with _CACHE_LOCK:
        _ensure_value_class()
        m = _CACHE.get(registry)
        if m is not None and m.value_class is not _values.ValueClass:
            m.unregister(registry)  # made before the switch to multiprocess values: rebuild
            m = None
        if m is None:
            m = _Metrics(registry)
            _CACHE[registry] = m
        return m


def _check(value: str, allowed: Iterable[str], what: str) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{what} {value!r} is not one of {allowed}")
    return value


def _num(x: Any, *keys: str) -> float | None:
    """A finite float from a number or from the first of ``keys`` in a dict; None otherwise."""
    if isinstance(x, Mapping):
        for k in keys:
            if k in x:
                return _num(x[k])
        return None
    if isinstance(x, bool) or x is None:
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _order_profile(profile: Any) -> list[tuple[int, float, float]]:
    """(order, positive, negative) triples from the shapes an order profile may take:
    ``{"positive": [...], "negative": [...]}`` (index 0 = order 1) or with dicts order -> value;
    a list of ``{"order", "positive", "negative"}``; or ``{order: {"positive", "negative"}}`` /
    ``{order: (positive, negative)}``."""
    out: dict[int, list[float]] = {}

    def put(order: Any, pos: Any, neg: Any) -> None:
        try:
            o = int(order)
        except (TypeError, ValueError):
            return
        if not 1 <= o <= MAX_ORDER:
            return
        slot = out.setdefault(o, [0.0, 0.0])
        slot[0] += abs(_num(pos) or 0.0)
        slot[1] += abs(_num(neg) or 0.0)

    if isinstance(profile, Mapping):
        pos_key = next((k for k in ("positive", "pos", "A_plus", "a_plus") if k in profile), None)
        neg_key = next((k for k in ("negative", "neg", "A_minus", "a_minus") if k in profile), None)
        if pos_key is not None or neg_key is not None:
            pos = profile.get(pos_key, []) if pos_key else []
            neg = profile.get(neg_key, []) if neg_key else []
            pos_d = dict(pos.items()) if isinstance(pos, Mapping) else {i + 1: v for i, v in enumerate(pos or [])}
            neg_d = dict(neg.items()) if isinstance(neg, Mapping) else {i + 1: v for i, v in enumerate(neg or [])}
            for o in set(pos_d) | set(neg_d):
                put(o, pos_d.get(o), neg_d.get(o))
        else:
            for o, v in profile.items():
                if isinstance(v, Mapping):
                    put(o, v.get("positive"), v.get("negative"))
                elif isinstance(v, (list, tuple)) and len(v) == 2:
                    put(o, v[0], v[1])
    elif isinstance(profile, (list, tuple)):
        for item in profile:
            if isinstance(item, Mapping) and "order" in item:
                put(item["order"], item.get("positive"), item.get("negative"))
    return sorted((o, v[0], v[1]) for o, v in out.items())


def label_shares(players: Iterable[Mapping[str, Any]], salient: Iterable[Mapping[str, Any]]) -> dict[str, float] | None:
    """Each label's share of the salient strength of one game, from a record's ``players`` (dicts
    with ``index`` and ``label``) and ``salient`` terms (dicts with ``players`` and ``strength`` or
    ``value``). A term counts under the most severe label of its players (:data:`SEVERITY`). None
    when no player is labelled (the shares would say nothing) or nothing is salient; a label
    outside the fixed set is read as ``unlabelled`` (a record is data, never a label value)."""
    try:
        by_index: dict[int, str] = {}
        for i, p in enumerate(players):
            label = p.get("label")
            by_index[int(p.get("index", i))] = label if label in LABELS else "unlabelled"
        if all(label == "unlabelled" for label in by_index.values()):
            return None
        rank = {label: r for r, label in enumerate(SEVERITY)}
        shares = dict.fromkeys(SEVERITY, 0.0)
        total = 0.0
        for term in salient:
            strength = _num(term, "strength")
            if strength is None:
                strength = _num(term, "value")
            members = [by_index.get(int(i), "unlabelled") for i in term.get("players") or []]
            if strength is None or not members:
                continue
            label = min(members, key=rank.__getitem__)
            shares[label] += abs(strength)
            total += abs(strength)
    except (AttributeError, TypeError, ValueError):  # not a record's shape: no shares, like a missing metric
        return None
    if total <= 0:
        return None
    return {label: value / total for label, value in shares.items()}


def _unix(dt: Any) -> float | None:
    if isinstance(dt, datetime):
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()
    return None


class AuditorTelemetry:
    """The auditor's metrics for one model. ``registry`` defaults to prometheus_client's global
    REGISTRY (which a single-process ``/metrics`` exposes; in multiprocess mode every file-backed
    metric is exported whatever its registry). Pre-creates every bounded label combination so
    each series exists from the start at 0."""

    def __init__(self, model: str, registry: CollectorRegistry | None = None) -> None:
        if not isinstance(model, str) or not _MODEL_RE.match(model):
            raise ValueError(f"model label {model!r} must match {_MODEL_RE.pattern} (an operator-configured name)")
        self.model = model
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self._m = _metrics_for(self.registry)
        m, md = self._m, model
        for r in SAMPLING_REASONS:
            m.sampling_decisions.labels(md, r)
        for r in DROP_REASONS:
            m.audits_dropped.labels(md, r)
        for o in OUTCOMES:
            m.audits.labels(md, o)
        for r in FLAG_REASONS:
            m.flagged.labels(md, r)
        for s in ERROR_STAGES:
            m.errors.labels(md, s)
        for h in (m.audit_duration, m.forward_passes, m.overfitting, m.misattribution, m.sparsity, m.cancellation):
            h.labels(md)
        for level in LEVELS:
            m.label_audits.labels(md, level)
            for label in SEVERITY:
                m.label_share.labels(md, level, label)
        m.queue_depth.labels(md)
        for spool_metric in (m.spool_depth, m.spool_flushed, m.spool_dropped):
            spool_metric.labels(md)

    # -- sampling and queue -------------------------------------------------------------------
    def record_sampling(self, decision: Any) -> None:
        """Count one sampling decision (anything with a ``reason`` from the sampling reasons)."""
        reason = _check(getattr(decision, "reason", decision), SAMPLING_REASONS, "sampling reason")
        self._m.sampling_decisions.labels(self.model, reason).inc()

    def record_drop(self, reason: str) -> None:
        self._m.audits_dropped.labels(self.model, _check(reason, DROP_REASONS, "drop reason")).inc()

    def set_queue_depth(self, n: int) -> None:
        self._m.queue_depth.labels(self.model).set(max(0, int(n)))

    def inc_queue(self) -> None:
        self._m.queue_depth.labels(self.model).inc()

    def dec_queue(self) -> None:
        self._m.queue_depth.labels(self.model).dec()

    # -- audits -------------------------------------------------------------------------------
    def record_audit(self, record: AuditRecord, flags: Iterable[str] | None = None) -> None:
        """Everything one finished audit contributes: outcome, duration (``finished_at -
        started_at``, else ``cost["seconds"]``; every outcome), forward passes, and for successful
        audits the score histograms, order strengths, flags and last-success time. ``flags``
        defaults to ``record.flags``."""
        m, md = self._m, self.model
        outcome = _check(record.outcome, OUTCOMES, "outcome")
        flags = list(record.flags if flags is None else flags)
        for f in flags:
            _check(f, FLAG_REASONS, "flag reason")
        m.audits.labels(md, outcome).inc()
        start, end = _unix(record.started_at), _unix(record.finished_at)
        duration = (end - start) if start is not None and end is not None else _num(record.cost, "seconds")
        if duration is not None and duration >= 0:
            m.audit_duration.labels(md).observe(duration)
        passes = _num(record.cost, "forward_passes")
        if passes is not None and passes >= 0:
            m.forward_passes.labels(md).observe(passes)
        if outcome != "success":
            return
        metrics = record.metrics or {}
        for hist, key in ((m.overfitting, "overfitting"), (m.misattribution, "misattribution"),
                          (m.sparsity, "sparsity"), (m.cancellation, "cancellation")):
            v = _num(metrics.get(key), "score", "value", "ratio", "share", "count")
            if v is not None:
                hist.labels(md).observe(v)
        for order, pos, neg in _order_profile(metrics.get("order_profile")):
            if pos > 0:
                m.order_strength.labels(md, str(order), "positive").inc(pos)
            if neg > 0:
                m.order_strength.labels(md, str(order), "negative").inc(neg)
        for f in dict.fromkeys(flags):
            m.flagged.labels(md, f).inc()
        self._record_label_shares(record.players, record.salient, str(metrics.get("granularity") or "words"))
        refinement = metrics.get("refinement")
        if isinstance(refinement, Mapping):  # the word game inside the most salient coarse players
            self._record_label_shares(refinement.get("players") or [], refinement.get("salient") or [], "words")
        m.last_success.labels(md).set(end if end is not None else time.time())

    def _record_label_shares(self, players: Any, salient: Any, granularity: str) -> None:
        shares = label_shares(players, salient)
        if shares is None:
            return
        level = "coarse" if granularity in COARSE else "words"
        for label, share in shares.items():
            self._m.label_share.labels(self.model, level, label).inc(share)
        self._m.label_audits.labels(self.model, level).inc()

    def record_error(self, stage: str) -> None:
        self._m.errors.labels(self.model, _check(stage, ERROR_STAGES, "error stage")).inc()

    # -- the store's outage spool --------------------------------------------------------------
    def set_spool_depth(self, n: int) -> None:
        self._m.spool_depth.labels(self.model).set(max(0, int(n)))

    def record_spool_flush(self, n: int = 1) -> None:
        self._m.spool_flushed.labels(self.model).inc(max(0, int(n)))

    def record_spool_drop(self) -> None:
        self._m.spool_dropped.labels(self.model).inc()

    def set_build_info(self, version: str) -> None:
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise ValueError(f"version {version!r} must match {_VERSION_RE.pattern}")
        self._m.build_info.labels(version, self.model).set(1)


def exposition(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """``(body, content_type)`` of the text exposition: aggregated over processes with
    ``MultiProcessCollector`` when ``PROMETHEUS_MULTIPROC_DIR`` is set, else ``registry`` (default
    the global one). For apps outside BentoML; BentoML's own ``/metrics`` does the same."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    if multiprocess_enabled():
        from prometheus_client import multiprocess

        reg = CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)
        return generate_latest(reg), CONTENT_TYPE_LATEST
    return generate_latest(registry or prometheus_client.REGISTRY), CONTENT_TYPE_LATEST
