"""The Grafana dashboard built by dashboards/build.py: the committed JSON is current, every panel says
which metrics it reads and those metrics exist, the queries follow the conventions (variables,
$__rate_interval) and all of them parse as PromQL (promtool). ``tests/service/test_prometheus_e2e.py`` runs
them against a real Prometheus scraping the real service.
"""

from __future__ import annotations

import importlib.resources
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tools import require_program
import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # dashboards/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(REPO))

from dashboards import build  # noqa: E402

COMMITTED = REPO / "dashboards" / "grafana" / "interaction-auditor.json"
PROVISIONING = REPO / "dashboards" / "grafana" / "provisioning"
SPEC = REPO / "docs" / "metrics-spec.md"

RANGE = re.compile(r"\[([^\]]+)\]")
SELECTOR = re.compile(r"\b((?:interaction_auditor|bentoml_service)_[a-z0-9_]+)(\{[^}]*\})?")


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(COMMITTED.read_text())


@pytest.fixture(scope="module")
def queries(dashboard: dict) -> list[tuple[str, str]]:
    found = build.panel_queries(dashboard)
    assert found, "the dashboard has no queries"
    return found


def spec_metrics() -> set[str]:
    names = re.findall(r"^\| `([a-z0-9_]+)` \|", SPEC.read_text(), flags=re.MULTILINE)
    assert names, f"no metrics found in {SPEC}"
    return {f"interaction_auditor_{name}" for name in names}


def bentoml_metrics() -> set[str]:
    """The HTTP metrics the installed BentoML exports for every new-style service, read from its
    source: RunnerTrafficMetricsMiddleware's metric names under the configured default namespace."""
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    config = importlib.resources.files("bentoml._internal.configuration.v2") / "default_configuration.yaml"
    namespace = yaml.safe_load(config.read_text())["services"]["metrics"]["namespace"]
    names = re.findall(r'name="([a-z_]+)"', inspect.getsource(RunnerTrafficMetricsMiddleware))
    assert namespace == "bentoml_service" and names
    return {f"{namespace}_{name}" for name in names}


def panels_with_targets(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p.get("targets")]


# --- the committed file -----------------------------------------------------------------------------


def test_committed_json_is_what_build_generates(dashboard: dict) -> None:
    assert json.loads(build.render()) == dashboard, (
        "dashboards/grafana/interaction-auditor.json is stale: run `python -m dashboards.build` and commit it"
    )


def test_build_check_mode_agrees() -> None:
    assert build.main(["--check"]) == 0


def test_build_runs_as_a_script() -> None:
    """``python dashboards/build.py`` works as well as ``python -m dashboards.build``."""
    result = subprocess.run(
        [sys.executable, "dashboards/build.py", "--check"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- panels -----------------------------------------------------------------------------------------


def test_every_panel_describes_the_metrics_it_reads(dashboard: dict) -> None:
    known = spec_metrics() | bentoml_metrics()
    for panel in panels_with_targets(dashboard):
        title, description = panel["title"], panel.get("description", "")
        used = build.metrics_named(t["expr"] for t in panel["targets"])
        assert used, f"{title}: reads no interaction_auditor_* or bentoml_service_* metric"
        for name in used:
            assert name in known, f"{title}: {name} is neither in docs/metrics-spec.md nor exported by BentoML"
            assert f"`{name}`" in description, f"{title}: description does not name {name}"


def test_bentoml_metrics_used_are_the_three_request_metrics(queries: list[tuple[str, str]]) -> None:
    used = {n for n in build.metrics_named(e for _, e in queries) if n.startswith("bentoml_service_")}
    assert used == {
        "bentoml_service_request_total",
        "bentoml_service_request_duration_seconds",
        "bentoml_service_request_in_progress",
    }
    assert used <= bentoml_metrics()


def test_every_range_is_rate_interval(queries: list[tuple[str, str]]) -> None:
    ranges = 0
    for title, expr in queries:
        for window in RANGE.findall(expr):
            ranges += 1
            assert window == "$__rate_interval", f"{title}: range [{window}] in {expr}"
        for func in ("rate", "increase", "irate"):
            for _ in re.finditer(rf"\b{func}\(", expr):
                assert "[$__rate_interval]" in expr, f"{title}: {func}() without $__rate_interval"
    assert ranges > 20


def test_every_selector_filters_by_the_variables(queries: list[tuple[str, str]]) -> None:
    for title, expr in queries:
        for name, matchers in SELECTOR.findall(expr):
            assert 'job=~"$job"' in matchers, f"{title}: {name} not filtered by $job"
            if name.startswith("interaction_auditor_"):
                assert 'model=~"$model"' in matchers, f"{title}: {name} not filtered by $model"


def test_panel_ids_unique_and_grid_fits(dashboard: dict) -> None:
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(titles) == len(set(titles)), "panel titles must be unique (tests and operators refer to them)"
    for panel in dashboard["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24, panel.get("title")
    for panel in panels_with_targets(dashboard):
        refs = [t["refId"] for t in panel["targets"]]
        assert all(refs) and len(refs) == len(set(refs)), f"{panel['title']}: refIds {refs}"
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_variables(dashboard: dict) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "model"):
        assert variables[name]["type"] == "query"
        assert variables[name]["includeAll"] and variables[name]["multi"]
        assert variables[name]["allValue"] == ".*"
    assert variables["model"]["query"] == 'label_values(interaction_auditor_build_info{job=~"$job"}, model)'


def test_the_issue_panels_exist(dashboard: dict) -> None:
    by_title = {p.get("title"): p for p in dashboard["panels"]}
    header = ["Audited / s", "Sampling ratio", "Drops / s", "Queue depth", "Audit p95 latency",
              "Flagged ratio", "Since last audit"]
    for title in header:
        assert by_title[title]["type"] == "stat", title
    for name in ("Overfitting", "Misattribution"):
        assert by_title[f"{name} score distribution"]["type"] == "heatmap"
        assert by_title[f"{name} score distribution"]["targets"][0]["format"] == "heatmap"
    # Threshold lines at the spec's default flag thresholds.
    for title, value in (("Overfitting score p50 / p95", 0.5), ("Misattribution score p50 / p95", 0.3)):
        defaults = by_title[title]["fieldConfig"]["defaults"]
        assert defaults["custom"]["thresholdsStyle"]["mode"] in ("line", "dashed")
        assert value in [s["value"] for s in defaults["thresholds"]["steps"]]
    for title in ("Flagged audits by reason", "Salient strength by order and sign",
                  "Order profile (share of salient strength)", "Cancellation ratio p50 / p95",
                  "Forward passes / s", "Audit compute seconds / s", "Requests / s by service and endpoint"):
        assert title in by_title, title
    rows = [p["title"] for p in dashboard["panels"] if p["type"] == "row"]
    assert "Serving (BentoML)" in rows


# --- PromQL validity --------------------------------------------------------------------------------


def substitute(expr: str, rate_interval: str = "1m") -> str:
    """A Grafana query as Prometheus sees it with every variable set to "All"."""
    return expr.replace("$__rate_interval", rate_interval).replace("$job", ".*").replace("$model", ".*")


def test_every_query_parses_as_promql(queries: list[tuple[str, str]], tmp_path: Path) -> None:
    """promtool parses each query as the expression of a recording rule (no server needed)."""
    promtool = require_program("promtool", install="apt-get install prometheus")
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": substitute(expr)} for i, (_, expr) in enumerate(queries)
    ]}]}
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


# --- provisioning -----------------------------------------------------------------------------------


def test_provisioning_files() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    assert source["jsonData"]["timeInterval"], "$__rate_interval needs the scrape interval"
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "interaction-auditor.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")


def test_misattribution_by_segment_label_panel(dashboard: dict) -> None:
    """Issue 19: the mean share of salient strength per player label, by level; the same ratio as
    the recording rule (whose window is fixed at 30m), each label in a fixed colour."""
    (panel,) = [p for p in dashboard["panels"] if p.get("title") == "Misattribution by segment label"]
    assert panel["type"] == "timeseries" and panel["fieldConfig"]["defaults"]["unit"] == "percentunit"
    (target,) = panel["targets"]
    assert build.metrics_named([target["expr"]]) == ["interaction_auditor_label_strength_share_total",
                                                     "interaction_auditor_label_audits_total"]
    assert "{{level}}" in target["legendFormat"] and "{{label}}" in target["legendFormat"]
    colours = {o["matcher"]["options"]: o["properties"][0]["value"]["fixedColor"]
               for o in panel["fieldConfig"]["overrides"]}
    assert colours == {".*: forbidden$": "red", ".*: irrelevant$": "orange", ".*: unlabelled$": "text",
                       ".*: relevant$": "green"}
    rules = yaml.safe_load((REPO / "dashboards" / "prometheus" / "rules.yml").read_text())
    (rule,) = [r for g in rules["groups"] for r in g["rules"]
               if r.get("record") == "model_level_label:interaction_auditor_label_strength_share:ratio_rate30m"]

    def normal(expr: str) -> str:
        return " ".join(expr.replace('{job=~"$job", model=~"$model"}', "").replace("$__rate_interval", "30m").split())

    assert normal(target["expr"]) == normal(rule["expr"])
