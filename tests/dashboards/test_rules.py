"""The Prometheus rules in dashboards/prometheus: promtool's checks and unit tests, plus the
conventions promtool does not know about (names, annotations, runbook anchors, test coverage).

promtool comes with Debian's ``prometheus`` package (``.ci/run`` installs it). Without it these
tests skip locally and fail under CI (``CI`` set), so a CI image without it cannot pass silently.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tools import require_program
import yaml

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "dashboards" / "prometheus"
RULES = PROM_DIR / "rules.yml"
RULES_TEST = PROM_DIR / "rules_test.yml"
CONFIG = PROM_DIR / "prometheus.yml"
SPEC = REPO / "docs" / "metrics-spec.md"
MONITORING_DOC = REPO / "docs" / "monitoring.md"

# level:metric:operations, e.g. model:interaction_auditor_misattribution_score:p95_5m
RECORD_NAME = re.compile(r"^[a-z_]+:interaction_auditor_[a-z0-9_]+:[a-z0-9_]+$")
REQUIRED_ANNOTATIONS = {"summary", "description", "runbook_url"}
SEVERITIES = {"critical", "warning", "info"}


def binary(name: str) -> str:
    """Path of a Prometheus binary: skip without it locally, fail without it in CI."""
    return require_program(name, install="apt-get install prometheus")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args], cwd=PROM_DIR, capture_output=True, text=True, timeout=300, check=False
    )


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict]:
    return [rule for group in load(RULES)["groups"] for rule in group["rules"]]


def alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def recordings() -> list[dict]:
    return [rule for rule in rules() if "record" in rule]


def spec_metrics() -> set[str]:
    """Full metric names of docs/metrics-spec.md's table (first column, prefix added)."""
    names = re.findall(r"^\| `([a-z0-9_]+)` \|", SPEC.read_text(), flags=re.MULTILINE)
    assert names, f"no metrics found in {SPEC}"
    return {f"interaction_auditor_{name}" for name in names}


def github_anchors(markdown: str) -> set[str]:
    """Anchors GitHub derives from headings, plus explicit <a id="..."> / {#...} anchors."""
    anchors = set(re.findall(r'<a (?:id|name)="([^"]+)"', markdown))
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", markdown, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors


# --- promtool ---------------------------------------------------------------------------------------


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_unit_tests() -> None:
    """Every alert firing and quiet, and the recording rules' values (see rules_test.yml)."""
    result = promtool("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_example_config() -> None:
    """The example prometheus.yml is valid and loads rules.yml."""
    result = promtool("check", "config", CONFIG.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout


# --- conventions ------------------------------------------------------------------------------------


def test_recording_rule_names_follow_level_metric_operations() -> None:
    bad = [r["record"] for r in recordings() if not RECORD_NAME.match(r["record"])]
    assert not bad, f"recording rules not named level:metric:operations: {bad}"
    names = [r["record"] for r in recordings()]
    assert len(names) == len(set(names)), "duplicate recording rule names"


def test_alerts_have_severity_and_annotations() -> None:
    for alert in alerts():
        name = alert["alert"]
        assert alert.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity label"
        missing = REQUIRED_ANNOTATIONS - set(alert.get("annotations", {}))
        assert not missing, f"{name}: missing annotations {missing}"


def test_the_issue_alerts_exist() -> None:
    names = {a["alert"] for a in alerts()}
    expected = {
        "InteractionAuditorMisattributionHigh",
        "InteractionAuditorOverfittingDrift",
        "InteractionAuditorStalled",
        "InteractionAuditorAuditsDropped",
        "InteractionAuditorLatencyOverBudget",
        "InteractionAuditorAuditErrorsHigh",
        "InteractionAuditorTargetDown",
    }
    assert expected <= names, f"missing alerts: {expected - names}"


def test_runbook_urls_point_at_existing_anchors_of_the_monitoring_doc() -> None:
    anchors = github_anchors(MONITORING_DOC.read_text())
    for alert in alerts():
        url = alert["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/monitoring.md", f"{alert['alert']}: runbook_url {url!r}"
        assert anchor in anchors, f"{alert['alert']}: no section #{anchor} in docs/monitoring.md"


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for test in load(RULES_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    for alert in alerts():
        assert alert["alert"] in firing, f"{alert['alert']} has no firing unit test"
        assert alert["alert"] in quiet, f"{alert['alert']} has no not-firing unit test"


def test_every_recording_rule_is_unit_tested() -> None:
    tested = " ".join(
        case["expr"] for test in load(RULES_TEST)["tests"] for case in test.get("promql_expr_test", [])
    )
    untested = [r["record"] for r in recordings() if not re.search(re.escape(r["record"]) + r"\b", tested)]
    assert not untested, f"recording rules without a promql_expr_test: {untested}"


def test_rules_read_only_metrics_of_the_spec() -> None:
    known = spec_metrics()
    for rule in rules():
        # Raw metrics only: the (?<!:) skips the metric part of recording rule names.
        for name in re.findall(r"(?<![:\w])interaction_auditor_[a-z0-9_]+", rule["expr"]):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in known or base in known, f"{rule.get('alert') or rule.get('record')}: unknown {name}"


def test_threshold_buckets_are_bucket_edges_of_the_spec() -> None:
    """le="0.3" / le="0.5" select real buckets: the spec's edges, as prometheus-client writes them."""
    from prometheus_client.utils import floatToGoString

    score_edges = {floatToGoString(x) for x in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)}
    for rule in rules():
        for edge in re.findall(r'le="([^"]+)"', rule["expr"]):
            assert edge in score_edges, f"{rule.get('record') or rule.get('alert')}: le={edge!r} is no bucket edge"
