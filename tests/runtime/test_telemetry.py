"""auditor.runtime.telemetry: the metrics contract of docs/metrics-spec.md, bounded labels, multiprocess."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tools import require_program
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.parser import text_string_to_metric_families

from auditor.runtime.records import AuditRecord
from auditor.runtime.sampling import REASONS, SamplingDecision
from auditor.runtime.telemetry import AuditorTelemetry

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
LABEL_VALUES = {
    "reason": set(REASONS) | {"queue_full", "handoff_error", "shutdown", "overfitting", "misattribution"},
    "outcome": {"success", "failed", "timeout", "skipped", "cancelled", "over_budget"},
    "stage": {"sampling", "handoff", "players", "scoring", "solver", "metrics", "store", "timeout"},
    "order": {str(i) for i in range(1, 17)},
    "sign": {"positive", "negative"},
    "level": {"coarse", "words"},
    "label": {"relevant", "irrelevant", "forbidden", "unlabelled"},
}


def spec_table() -> dict[str, tuple[str, set[str], str | None]]:
    """metric name -> (type, label names, gauge multiprocess mode), read from docs/metrics-spec.md."""
    out = {}
    for line in (ROOT / "docs" / "metrics-spec.md").read_text().splitlines():
        m = re.match(r"\|\s*`(\w+)`\s*\|\s*(\w+)\s*(?:\((\w+)\))?[^|]*\|\s*([^|]*)\|", line)
        if m:
            name, typ, mode, labels = m.groups()
            out["interaction_auditor_" + name] = (typ, {x.strip() for x in labels.split(",") if x.strip()}, mode)
    return out


def spec_buckets() -> dict[str, list[float]]:
    out = {}
    text = (ROOT / "docs" / "metrics-spec.md").read_text()
    for line in text.split("Histogram buckets:")[1].splitlines():
        m = re.match(r"- ([\w, ]+): ([\d., ]+)$", line.strip())
        if m:
            for name in m.group(1).split(","):
                out["interaction_auditor_" + name.strip()] = [float(x) for x in m.group(2).split(",")]
    return out


def record(i: int = 0, **kw) -> AuditRecord:
    base = dict(
        request_id=f"r{i}", model_id="clean", started_at=T0, finished_at=T0 + timedelta(seconds=3),
        metrics={"overfitting": 0.55, "misattribution": 0.25, "sparsity": 42, "cancellation": 0.3,
                 "order_profile": {"positive": [0.5, 0.25, 0.0], "negative": [0.0, 0.125, 0.5]}},
        flags=["overfitting"], cost={"forward_passes": 1024, "seconds": 2.0, "device": "cpu"},
    )
    base.update(kw)
    return AuditRecord(**base)


# A labelled passage audit: players 0-3 labelled relevant, irrelevant, forbidden, unlabelled (their
# segment ids and texts are user data), and salient terms of strength 4, 2, 1, 2, 1 (total 10).
PLAYERS = [{"index": i, "label": label, "segment_id": f"doc-{i}", "text": f"Alice passage {i}"}
           for i, label in enumerate(("relevant", "irrelevant", "forbidden", "unlabelled"))]
SALIENT = [{"kind": "and", "players": [0], "value": 4.0, "strength": 4.0},
           {"kind": "and", "players": [0, 1], "value": -2.0, "strength": 2.0},
           {"kind": "or", "players": [1, 2], "value": 1.0, "strength": 1.0},
           {"kind": "and", "players": [3], "value": 2.0, "strength": 2.0},
           {"kind": "and", "players": [0, 3], "value": -1.0}]  # strength from the value
# By hand: each term under the most severe label of its players (forbidden > irrelevant > unlabelled > relevant).
SHARES = {"relevant": 0.4, "irrelevant": 0.2, "forbidden": 0.1, "unlabelled": 0.3}


def labelled_record(i: int = 0, **kw) -> AuditRecord:
    metrics = {"granularity": "segments", "misattribution": 0.3, "sparsity": 5,
               "refinement": {"players": [{"index": 0, "label": "relevant"}, {"index": 1, "label": "forbidden"}],
                              "salient": [{"players": [0, 1], "strength": 3.0}, {"players": [0], "strength": 1.0}]}}
    return record(i, **{"players": PLAYERS, "salient": SALIENT, "metrics": metrics, "flags": [], **kw})


def families(registry: CollectorRegistry) -> dict:
    return {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}


def value(fams, family: str, sample: str, **labels) -> float:
    for s in fams[family].samples:
        if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
            return s.value
    raise KeyError((family, sample, labels))


def exercise(t: AuditorTelemetry) -> None:
    t.set_build_info("0.1.0")
    for d in (SamplingDecision(True, "base_rate", 0.1), SamplingDecision(False, "not_sampled", 0.1),
              SamplingDecision(False, "not_sampled", 0.1), SamplingDecision(True, "forced")):
        t.record_sampling(d)
    t.record_drop("queue_full")
    t.inc_queue()
    t.inc_queue()
    t.dec_queue()
    t.record_audit(record(0))
    t.record_audit(record(1, outcome="failed", error="RuntimeError: x", metrics={}, flags=[], cost={"seconds": 0.2},
                          started_at=None, finished_at=None))
    t.record_error("scoring")


def test_exposition_matches_the_spec_table():
    reg = CollectorRegistry()
    t = AuditorTelemetry("clean-testbed", reg)
    exercise(t)
    fams = families(reg)
    spec = spec_table()
    assert len(spec) == 20
    gauges = {"interaction_auditor_build_info": t._m.build_info, "interaction_auditor_queue_depth": t._m.queue_depth,
              "interaction_auditor_last_success_timestamp_seconds": t._m.last_success,
              "interaction_auditor_store_spool_depth": t._m.spool_depth}
    for name, (typ, labels, mode) in spec.items():
        fam_name = name[: -len("_total")] if typ == "counter" else name
        assert fam_name in fams, name
        fam = fams[fam_name]
        assert fam.type == typ, name
        if typ == "gauge":
            assert mode is not None and gauges[name]._multiprocess_mode == mode, name
        for s in fam.samples:
            keys = set(s.labels) - {"le"}
            assert keys == labels, (name, keys)
            if typ == "counter":
                assert s.name in (name, fam_name + "_created")
    # single-process exposition adds *_created gauges next to counters and histograms
    ours = {f for f in fams if f.startswith("interaction_auditor_")
            and not (f.endswith("_created") and f[: -len("_created")] in fams)}
    assert ours == {n[: -len("_total")] if spec[n][0] == "counter" else n for n in spec}


def test_labels_are_bounded():
    reg = CollectorRegistry()
    t = AuditorTelemetry("clean-testbed", reg)
    exercise(t)
    t.record_audit(labelled_record(7, players=[{**PLAYERS[0], "label": "What is Alice charged with?"}, *PLAYERS[1:]]))
    for fam in families(reg).values():
        for s in fam.samples:
            for k, v in s.labels.items():
                if k == "model":
                    assert v == "clean-testbed"
                elif k == "version":
                    assert v == "0.1.0"
                elif k != "le":
                    assert v in LABEL_VALUES[k], (fam.name, k, v)
    for bad in ("hello world", "What is Alice charged with?", "", "x" * 300, 'a"b', "a\nb"):
        with pytest.raises(ValueError):
            AuditorTelemetry(bad, reg)
    with pytest.raises(ValueError):
        t.record_drop("user said so")
    with pytest.raises(ValueError):
        t.record_error("req-123")
    with pytest.raises(ValueError):
        t.record_sampling(type("D", (), {"reason": "prompt text"})())
    with pytest.raises(ValueError):
        t.set_build_info("0.1 beta")
    with pytest.raises(ValueError):
        t.record_audit(record(), flags=["toxicity"])
    # nothing user-written reached the exposition
    text = generate_latest(reg).decode()
    assert "Alice" not in text and "req-" not in text and "r0" not in text


def test_histogram_buckets_match_spec_and_contain_thresholds():
    reg = CollectorRegistry()
    AuditorTelemetry("clean", reg)
    fams = families(reg)
    expected = spec_buckets()
    assert set(expected) == {
        "interaction_auditor_overfitting_score", "interaction_auditor_misattribution_score",
        "interaction_auditor_cancellation_ratio", "interaction_auditor_sparsity",
        "interaction_auditor_audit_duration_seconds", "interaction_auditor_audit_forward_passes"}
    for name, edges in expected.items():
        les = [s.labels["le"] for s in fams[name].samples if s.name == name + "_bucket"]
        assert [float(x) for x in les] == edges + [float("inf")], name
    over = [float(s.labels["le"]) for s in fams["interaction_auditor_overfitting_score"].samples if "le" in s.labels]
    mis = [float(s.labels["le"]) for s in fams["interaction_auditor_misattribution_score"].samples if "le" in s.labels]
    assert 0.5 in over and 0.3 in mis


def test_recorded_values():
    reg = CollectorRegistry()
    t = AuditorTelemetry("clean", reg)
    exercise(t)
    f = families(reg)
    p = "interaction_auditor_"
    assert value(f, p + "build_info", p + "build_info", version="0.1.0", model="clean") == 1
    assert value(f, p + "sampling_decisions", p + "sampling_decisions_total", reason="not_sampled") == 2
    assert value(f, p + "sampling_decisions", p + "sampling_decisions_total", reason="forced") == 1
    assert value(f, p + "sampling_decisions", p + "sampling_decisions_total", reason="rate_capped") == 0
    assert value(f, p + "audits_dropped", p + "audits_dropped_total", reason="queue_full") == 1
    assert value(f, p + "queue_depth", p + "queue_depth") == 1
    assert value(f, p + "audits", p + "audits_total", outcome="success") == 1
    assert value(f, p + "audits", p + "audits_total", outcome="failed") == 1
    # duration: both audits (3 s from timestamps, 0.2 s from cost)
    assert value(f, p + "audit_duration_seconds", p + "audit_duration_seconds_count") == 2
    assert value(f, p + "audit_duration_seconds", p + "audit_duration_seconds_sum") == pytest.approx(3.2)
    assert value(f, p + "audit_duration_seconds", p + "audit_duration_seconds_bucket", le="2.5") == 1
    assert value(f, p + "audit_forward_passes", p + "audit_forward_passes_bucket", le="1024.0") == 1
    # score histograms only from the successful audit
    assert value(f, p + "overfitting_score", p + "overfitting_score_count") == 1
    assert value(f, p + "overfitting_score", p + "overfitting_score_bucket", le="0.5") == 0
    assert value(f, p + "overfitting_score", p + "overfitting_score_bucket", le="0.6") == 1
    assert value(f, p + "misattribution_score", p + "misattribution_score_bucket", le="0.3") == 1
    assert value(f, p + "sparsity", p + "sparsity_sum") == 42
    assert value(f, p + "cancellation_ratio", p + "cancellation_ratio_sum") == pytest.approx(0.3)
    os_ = p + "order_strength"
    assert value(f, os_, os_ + "_total", order="1", sign="positive") == pytest.approx(0.5)
    assert value(f, os_, os_ + "_total", order="2", sign="negative") == pytest.approx(0.125)
    assert value(f, os_, os_ + "_total", order="3", sign="negative") == pytest.approx(0.5)
    with pytest.raises(KeyError):
        value(f, os_, os_ + "_total", order="1", sign="negative")  # zero strengths add no series
    assert value(f, p + "flagged_audits", p + "flagged_audits_total", reason="overfitting") == 1
    assert value(f, p + "flagged_audits", p + "flagged_audits_total", reason="misattribution") == 0
    assert value(f, p + "last_success_timestamp_seconds", p + "last_success_timestamp_seconds") == (
        T0 + timedelta(seconds=3)).timestamp()
    assert value(f, p + "errors", p + "errors_total", stage="scoring") == 1


def test_order_profile_shapes_and_missing_metrics():
    reg = CollectorRegistry()
    t = AuditorTelemetry("m", reg)
    shapes = [
        [{"order": 1, "positive": 0.5, "negative": 0.25}, {"order": 2, "positive": 0.0, "negative": -0.25}],
        {"1": {"positive": 0.5, "negative": 0.25}, "2": (0.0, 0.25), "17": (9.0, 9.0)},
        {"positive": {"1": 0.5}, "negative": {"1": 0.25, "2": 0.25}},
    ]
    for prof in shapes:
        t.record_audit(record(metrics={"order_profile": prof, "misattribution": None, "overfitting": float("nan")},
                              flags=[]))
    f = families(reg)
    os_ = "interaction_auditor_order_strength"
    assert value(f, os_, os_ + "_total", order="1", sign="positive") == pytest.approx(1.5)
    assert value(f, os_, os_ + "_total", order="1", sign="negative") == pytest.approx(0.75)
    assert value(f, os_, os_ + "_total", order="2", sign="negative") == pytest.approx(0.75)
    assert all(s.labels.get("order") != "17" for s in f[os_].samples)
    assert value(f, "interaction_auditor_misattribution_score", "interaction_auditor_misattribution_score_count") == 0
    assert value(f, "interaction_auditor_overfitting_score", "interaction_auditor_overfitting_score_count") == 0
    # nested metric dicts ({"score": x}) are read too
    t.record_audit(record(metrics={"overfitting": {"score": 0.9}}, flags=[]))
    f = families(reg)
    assert value(f, "interaction_auditor_overfitting_score", "interaction_auditor_overfitting_score_sum") == 0.9


def test_recreating_telemetry_does_not_crash_and_shares_metrics():
    reg = CollectorRegistry()
    a = AuditorTelemetry("clean", reg)
    b = AuditorTelemetry("clean", reg)
    c = AuditorTelemetry("shortcut", reg)
    a.record_error("store")
    b.record_error("store")
    c.record_error("store")
    f = families(reg)
    assert value(f, "interaction_auditor_errors", "interaction_auditor_errors_total", model="clean", stage="store") == 2
    assert value(f, "interaction_auditor_errors", "interaction_auditor_errors_total", model="shortcut", stage="store") == 1
    # the default global registry too
    AuditorTelemetry("clean")
    AuditorTelemetry("clean")


def promtool_or_skip() -> str:
    return require_program("promtool", install="apt-get install prometheus")


def promtool_check(exe: str, text: bytes) -> None:
    res = subprocess.run([exe, "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert res.returncode == 0, (res.stdout + res.stderr).decode()
    assert not (res.stdout + res.stderr).strip(), (res.stdout + res.stderr).decode()  # no lint warnings


def test_promtool_check_metrics_single_process():
    exe = promtool_or_skip()
    reg = CollectorRegistry()
    t = AuditorTelemetry("clean-testbed", reg)
    exercise(t)
    t.record_audit(labelled_record(5))
    promtool_check(exe, generate_latest(reg))


WORKER = textwrap.dedent("""
    import os, sys, json
    from datetime import datetime, timedelta, timezone
    if sys.argv[3] == "late":  # prometheus_client imported before the variable is set
        import prometheus_client  # noqa: F401
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
    from auditor.runtime.records import AuditRecord
    from auditor.runtime.sampling import SamplingDecision
    from auditor.runtime.telemetry import AuditorTelemetry
    from prometheus_client import values
    t = AuditorTelemetry("clean")
    t2 = AuditorTelemetry("clean")  # a second object in the same process
    k = int(sys.argv[2])
    t.set_build_info("0.1.0")
    for i in range(k):
        t.record_sampling(SamplingDecision(True, "base_rate", 0.5))
        t2.record_sampling(SamplingDecision(False, "not_sampled", 0.5))
    t0 = datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=k)
    t.record_audit(AuditRecord(request_id="x", started_at=t0, finished_at=t0 + timedelta(seconds=k),
                   metrics={"overfitting": 0.05 * k, "sparsity": 10 * k, "order_profile": {"positive": [k]}},
                   flags=["misattribution"], cost={"forward_passes": 100 * k}))
    t.set_queue_depth(k)
    print(json.dumps({"pid": os.getpid(), "value_class": values.ValueClass.__name__}))
""")


def run_worker(mpdir: Path, k: int, mode: str = "env") -> dict:
    import json

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.pop("prometheus_multiproc_dir", None)
    if mode == "env":
        env["PROMETHEUS_MULTIPROC_DIR"] = str(mpdir)
    out = subprocess.run([sys.executable, "-c", WORKER, str(mpdir), str(k), mode], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def collect(mpdir: Path) -> tuple[dict, bytes]:
    reg = CollectorRegistry()
    MultiProcessCollector(reg, path=str(mpdir))
    text = generate_latest(reg)
    return {f.name: f for f in text_string_to_metric_families(text.decode())}, text


@pytest.mark.parametrize("mode", ["env", "late"])
def test_multiprocess_mode_sums_over_processes(tmp_path, mode):
    mpdir = tmp_path / "prom"
    mpdir.mkdir()
    a = run_worker(mpdir, 3, mode)
    b = run_worker(mpdir, 5, mode)
    assert a["value_class"] == b["value_class"] == "MmapedValue"
    assert any(mpdir.glob(f"counter_{a['pid']}.db")) and any(mpdir.glob(f"histogram_{b['pid']}.db"))
    f, text = collect(mpdir)
    p = "interaction_auditor_"
    assert value(f, p + "sampling_decisions", p + "sampling_decisions_total", reason="base_rate") == 8
    assert value(f, p + "sampling_decisions", p + "sampling_decisions_total", reason="not_sampled") == 8
    assert value(f, p + "sampling_decisions", p + "sampling_decisions_total", reason="rate_capped") == 0
    assert value(f, p + "audits", p + "audits_total", outcome="success") == 2
    assert value(f, p + "flagged_audits", p + "flagged_audits_total", reason="misattribution") == 2
    assert value(f, p + "audit_duration_seconds", p + "audit_duration_seconds_count") == 2
    assert value(f, p + "audit_duration_seconds", p + "audit_duration_seconds_sum") == pytest.approx(8.0)
    assert value(f, p + "audit_duration_seconds", p + "audit_duration_seconds_bucket", le="5.0") == 2
    assert value(f, p + "audit_duration_seconds", p + "audit_duration_seconds_bucket", le="2.5") == 0
    assert value(f, p + "sparsity", p + "sparsity_sum") == 80
    assert value(f, p + "sparsity", p + "sparsity_bucket", le="50.0") == 2
    assert value(f, p + "overfitting_score", p + "overfitting_score_bucket", le="0.2") == 1
    assert value(f, p + "order_strength", p + "order_strength_total", order="1", sign="positive") == 8
    # gauges follow their multiprocess modes: max for build info and last success, livesum for queue
    assert value(f, p + "build_info", p + "build_info", version="0.1.0", model="clean") == 1
    assert value(f, p + "last_success_timestamp_seconds", p + "last_success_timestamp_seconds") == (
        datetime(2025, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=10)).timestamp()
    assert value(f, p + "queue_depth", p + "queue_depth") == 8
    mark_process_dead(a["pid"], path=str(mpdir))  # what a server does when a worker exits
    f, _ = collect(mpdir)
    assert value(f, p + "queue_depth", p + "queue_depth") == 5
    assert value(f, p + "sampling_decisions", p + "sampling_decisions_total", reason="base_rate") == 8
    exe = shutil.which("promtool")
    if exe or os.environ.get("CI") == "true":
        promtool_check(promtool_or_skip(), text)


def test_label_shares_split_salient_strength_by_the_most_severe_label():
    from auditor.engine.interactions import SalientTerm
    from auditor.metrics.audit_metrics import misattribution_score
    from auditor.runtime.telemetry import label_shares

    shares = label_shares(PLAYERS, SALIENT)
    assert shares == pytest.approx(SHARES)
    assert sum(shares.values()) == pytest.approx(1.0)
    # independent oracle: the metrics module's misattribution score of the same terms
    terms = [SalientTerm(t["kind"], sum(1 << i for i in t["players"]), tuple(t["players"]), t["value"]) for t in SALIENT]
    labels = [p["label"] for p in PLAYERS]
    assert shares["forbidden"] + shares["irrelevant"] == pytest.approx(misattribution_score(terms, labels))
    # nothing labelled, or nothing salient: no shares (the audit is not counted)
    assert label_shares([{**p, "label": "unlabelled"} for p in PLAYERS], SALIENT) is None
    assert label_shares(PLAYERS, []) is None
    # a label outside the fixed set (a record is data) is read as unlabelled, never exported as is
    odd = label_shares([{**PLAYERS[0], "label": "Alice's lawyer"}, *PLAYERS[1:]], SALIENT)
    assert odd == pytest.approx({"relevant": 0.0, "irrelevant": 0.2, "forbidden": 0.1, "unlabelled": 0.7})
    # not a record's shape: no shares rather than an exception in the worker
    assert label_shares(["doc-1"], SALIENT) is None
    assert label_shares(PLAYERS, [{"players": ["x"], "strength": 1.0}]) is None


def test_label_shares_are_exported_per_level_without_user_text():
    reg = CollectorRegistry()
    t = AuditorTelemetry("clean", reg)
    t.record_audit(labelled_record(0))
    t.record_audit(labelled_record(1))
    t.record_audit(record(2))  # no players: not a labelled audit
    t.record_audit(labelled_record(3, outcome="failed", error="x"))  # failed audits add no quality signal
    words = record(4, players=PLAYERS, salient=SALIENT[:2], metrics={"granularity": "spans"}, flags=[])
    t.record_audit(words)  # a words audit: relevant 4/6, irrelevant 2/6
    f = families(reg)
    share, audits = "interaction_auditor_label_strength_share", "interaction_auditor_label_audits"
    assert value(f, audits, audits + "_total", level="coarse") == 2
    for label, expected in SHARES.items():
        assert value(f, share, share + "_total", level="coarse", label=label) == pytest.approx(2 * expected)
    # words level: the two refinement games (forbidden 3/4, relevant 1/4) and the words audit
    assert value(f, audits, audits + "_total", level="words") == 3
    assert value(f, share, share + "_total", level="words", label="forbidden") == pytest.approx(1.5)
    assert value(f, share, share + "_total", level="words", label="relevant") == pytest.approx(0.5 + 4 / 6)
    assert value(f, share, share + "_total", level="words", label="irrelevant") == pytest.approx(2 / 6)
    assert value(f, share, share + "_total", level="words", label="unlabelled") == 0
    text = generate_latest(reg).decode()
    assert "doc-" not in text and "Alice" not in text
