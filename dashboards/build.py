"""Generate the interaction-auditor Grafana dashboard from code.

Run ``python -m dashboards.build`` (or ``python dashboards/build.py``) after editing this file and
commit the regenerated ``dashboards/grafana/interaction-auditor.json``; ``tests/dashboards/test_dashboards.py``
fails when the two disagree, and ``--check`` does the same comparison for CI without writing.

Why code and not a hand-edited JSON export: almost every panel is one of a few patterns (a header
number, a p50/p95 pair read from a histogram, a heatmap of a histogram, a rate split by a label), so
the patterns are helpers and each panel is one call that names its metric. Metric names, labels,
buckets and thresholds follow the contract in ``docs/metrics-spec.md``; the serving row reads the
metrics BentoML 1.4 exports for every service under the ``bentoml_service`` namespace (see
``dashboards/README.md`` for where in BentoML's source they come from).

Query conventions, enforced by ``tests/dashboards/test_dashboards.py`` and ``tests/service/test_prometheus_e2e.py``:
- auditor queries filter ``job=~"$job", model=~"$model"``; BentoML's metrics carry no ``model``
  label, so serving queries filter ``job=~"$job"`` (and leave out health-probe endpoints);
- every range is ``[$__rate_interval]``, which Grafana keeps >= 4 scrape intervals, so no panel goes
  blank when the scrape interval changes;
- each panel's description ends with the metrics it reads; ``panel_queries`` lists every PromQL.
"""

from __future__ import annotations

import argparse
import json
import re
import string
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as gcommon
from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import heatmap as gheatmap
from grafana_foundation_sdk.builders import prometheus as gprom
from grafana_foundation_sdk.builders import stat as gstat
from grafana_foundation_sdk.builders import timeseries as gts
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as md
from grafana_foundation_sdk.models import heatmap as mheatmap
from grafana_foundation_sdk.models import prometheus as mprom

OUTPUT = Path(__file__).resolve().parent / "grafana" / "interaction-auditor.json"
UID = "interaction-auditor"
TITLE = "Interaction auditor"

PREFIX = "interaction_auditor_"
AUDITOR_MATCHERS = 'job=~"$job", model=~"$model"'
# Health probes are counted by BentoML like any request; they are not served traffic.
SERVING_MATCHERS = 'job=~"$job", endpoint!~"/(healthz|livez|readyz|health)"'
RATE_WINDOW = "[$__rate_interval]"
DATASOURCE = md.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Default flag thresholds of docs/metrics-spec.md. Both are histogram bucket edges, which is what
# makes "share above the threshold" an exact bucket ratio rather than an interpolation.
OVERFITTING_THRESHOLD = 0.5
MISATTRIBUTION_THRESHOLD = 0.3
# Reasons of sampling_decisions_total that mean "sampled" (the others: not_sampled, rate_capped).
SAMPLED_REASONS = "base_rate|low_confidence|caller_flag|labelled|forced"

METRIC_RE = re.compile(r"\b((?:interaction_auditor|bentoml_service)_[a-z0-9_]+)")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# --- PromQL -----------------------------------------------------------------------------------------


def auditor(name: str, extra: str = "") -> str:
    """Selector for an auditor metric (``name`` without the prefix), filtered by $job and $model."""
    return f"{PREFIX}{name}{{{AUDITOR_MATCHERS}{', ' + extra if extra else ''}}}"


def serving(name: str, extra: str = "") -> str:
    """Selector for BentoML's ``bentoml_service_<name>``: by $job (it has no model label), no probes."""
    return f"bentoml_service_{name}{{{SERVING_MATCHERS}{', ' + extra if extra else ''}}}"


def sum_rate(selector: str, by: str = "") -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({selector}{RATE_WINDOW}))"


def quantile(q: float, bucket_selector: str, by: str = "") -> str:
    """``histogram_quantile`` of a classic histogram's ``_bucket`` series, kept apart by ``by``."""
    return f"histogram_quantile({q}, {sum_rate(bucket_selector, 'le' + (', ' + by if by else ''))})"


def share_above(histogram: str, edge: float) -> str:
    """Per model, the fraction of observations above a bucket edge: 1 - bucket{le=edge} / count."""
    below = sum_rate(auditor(f"{histogram}_bucket", f'le="{edge}"'), "model")
    return f"1 - ({below} / {sum_rate(auditor(f'{histogram}_count'), 'model')})"


def label_share() -> str:
    """Per model, level and player label, the mean share of a labelled audit's salient strength
    resting on that label: summed shares over counted audits (the recording rule
    ``model_level_label:interaction_auditor_label_strength_share:ratio_rate30m`` with a 30m window)."""
    shares = sum_rate(auditor("label_strength_share_total"), "model, level, label")
    audits = sum_rate(auditor("label_audits_total"), "model, level")
    return f"{shares} / on (model, level) group_left {audits}"


def metrics_named(exprs: Iterable[str]) -> list[str]:
    """Base metric names (histogram suffixes dropped) read by the expressions, in first-use order."""
    names: list[str] = []
    for expr in exprs:
        for name in METRIC_RE.findall(expr):
            base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name)
            if base not in names:
                names.append(base)
    return names


# --- panel patterns ---------------------------------------------------------------------------------


def query(expr: str, legend: str, ref_id: str = "A", fmt: mprom.PromQueryFormat | None = None) -> gprom.Dataquery:
    target = gprom.Dataquery().ref_id(ref_id).expr(expr).legend_format(legend).datasource(DATASOURCE)
    return target.format(fmt) if fmt is not None else target


def describe(text: str, exprs: Iterable[str]) -> str:
    """What the panel shows, then the metrics it reads, so an operator can find them in the spec."""
    return f"{text}\n\nMetrics: " + ", ".join(f"`{name}`" for name in metrics_named(exprs))


def thresholds(*steps: tuple[float | None, str]) -> gd.ThresholdsConfig:
    """Absolute colour steps; the first step's value is None (the base colour)."""
    return (
        gd.ThresholdsConfig()
        .mode(md.ThresholdsMode.ABSOLUTE)
        .steps([md.Threshold(value=value, color=color) for value, color in steps])
    )


def stat(
    title: str,
    text: str,
    expr: str,
    unit: str,
    steps: Sequence[tuple[float | None, str]] = ((None, "green"),),
    legend: str | None = None,
) -> gstat.Panel:
    """A header number (last value, with a sparkline), coloured by ``steps``."""
    return (
        gstat.Panel()
        .title(title)
        .description(describe(text, [expr]))
        .datasource(DATASOURCE)
        .with_target(query(expr, legend or title))
        .unit(unit)
        .height(4)
        .span(3)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(gcommon.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
        .thresholds(thresholds(*steps))
    )


def timeseries(title: str, text: str, targets: Sequence[tuple[str, str]], unit: str, span: int = 12) -> gts.Panel:
    """Lines for one or more ``(expr, legend)`` queries; legend as a table with last/max values."""
    panel = (
        gts.Panel()
        .title(title)
        .description(describe(text, [expr for expr, _ in targets]))
        .datasource(DATASOURCE)
        .unit(unit)
        .height(8)
        .span(span)
        .fill_opacity(10)
        .legend(
            gcommon.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(gcommon.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING))
    )
    for ref_id, (expr, legend) in zip(string.ascii_uppercase, targets, strict=False):
        panel = panel.with_target(query(expr, legend, ref_id))
    return panel


def stacked_bars(panel: gts.Panel) -> gts.Panel:
    """Stack the series as bars: for compositions (reasons, orders) where the total matters too."""
    return (
        panel.draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .stacking(gcommon.StackingConfig().mode(common.StackingMode.NORMAL))
    )


def label_colours(panel: gts.Panel) -> gts.Panel:
    """One fixed colour per player label, whatever the model or level: forbidden red, irrelevant
    orange, unlabelled grey, relevant green."""
    for label, colour in (("forbidden", "red"), ("irrelevant", "orange"), ("unlabelled", "text"), ("relevant", "green")):
        panel = panel.override_by_regexp(
            f".*: {label}$", [md.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": colour})]
        )
    return panel


def with_threshold_line(panel: gts.Panel, value: float) -> gts.Panel:
    """Draw a flag threshold as a dashed line (green below, red above)."""
    return panel.thresholds(thresholds((None, "green"), (value, "red"))).thresholds_style(
        gcommon.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
    )


def quantiles(
    title: str,
    text: str,
    histogram: str,
    unit: str,
    qs: Sequence[float] = (0.5, 0.95),
    threshold: float | None = None,
    span: int = 12,
) -> gts.Panel:
    """p50/p95 per model of an auditor histogram, with the flag threshold line when there is one."""
    targets = [(quantile(q, auditor(f"{histogram}_bucket"), "model"), f"p{round(q * 100)} {{{{model}}}}") for q in qs]
    panel = timeseries(title, text, targets, unit, span=span)
    return with_threshold_line(panel, threshold) if threshold is not None else panel


def heatmap(title: str, text: str, histogram: str, unit: str) -> gheatmap.Panel:
    """A histogram's distribution over time: one row per bucket, audits per second as colour.

    The buckets come pre-computed from Prometheus (``format: heatmap``, ``calculate: false``), so
    the rows are exactly the spec's bucket edges, including the flag threshold edge.
    """
    expr = sum_rate(auditor(f"{histogram}_bucket"), "le")
    return (
        gheatmap.Panel()
        .title(title)
        .description(describe(text, [expr]))
        .datasource(DATASOURCE)
        .with_target(query(expr, "{{le}}", fmt=mprom.PromQueryFormat.HEATMAP))
        .height(8)
        .span(12)
        .calculate(False)
        .rows_frame(gheatmap.RowsHeatmapOptions().layout(common.HeatmapCellLayout.LE))
        .y_axis(gheatmap.YAxisConfig().unit(unit))
        .cell_values(gheatmap.CellValues().unit("ops"))
        .color(
            gheatmap.HeatmapColorOptions()
            .mode(mheatmap.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(mheatmap.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .steps(64)
            .fill("dark-orange")
        )
        .show_value(common.VisibilityMode.NEVER)
    )


# --- rows -------------------------------------------------------------------------------------------


def header_stats() -> list[gstat.Panel]:
    """The eight numbers an on-call engineer reads first (7 asked for, plus what is running)."""
    sampled = sum_rate(auditor("sampling_decisions_total", f'reason=~"{SAMPLED_REASONS}"'))
    decisions = sum_rate(auditor("sampling_decisions_total"))
    successes = sum_rate(auditor("audits_total", 'outcome="success"'))
    return [
        stat("Audited / s", "Successful audits finished per second.", successes, "ops"),
        stat(
            "Sampling ratio",
            "Share of served requests sampled for an audit (all sampled reasons over all decisions).",
            f"{sampled} / {decisions}",
            "percentunit",
        ),
        stat(
            "Drops / s",
            "Sampled audits not queued per second (queue full or hand-off error). Should be 0.",
            sum_rate(auditor("audits_dropped_total")),
            "ops",
            ((None, "green"), (1e-9, "red")),
        ),
        stat(
            "Queue depth",
            "Audits waiting for the auditor's worker.",
            f"sum({auditor('queue_depth')})",
            "short",
            ((None, "green"), (10, "orange"), (50, "red")),
        ),
        stat(
            "Audit p95 latency",
            "95th percentile wall time of one audit. Red above the default per-audit budget (120 s).",
            quantile(0.95, auditor("audit_duration_seconds_bucket")),
            "s",
            ((None, "green"), (60, "orange"), (120, "red")),
        ),
        stat(
            "Flagged ratio",
            "Flags raised (overfitting or misattribution) per successful audit.",
            f"{sum_rate(auditor('flagged_audits_total'))} / {successes}",
            "percentunit",
            ((None, "green"), (0.1, "orange"), (0.25, "red")),
        ),
        stat(
            "Since last audit",
            "Seconds since the most recent successful audit of the selected models.",
            f"time() - max({auditor('last_success_timestamp_seconds')})",
            "s",
            ((None, "green"), (900, "orange"), (3600, "red")),
        ),
        stat(
            "Running",
            "Auditor version and model of each running build (build_info is 1 per build).",
            f"max by (version, model) ({auditor('build_info')})",
            "none",
            legend="{{model}} {{version}}",
        ).text_mode(common.BigValueTextMode.NAME),
    ]


def quality_panels() -> list[Any]:
    """Model-quality signals: overfitting and misattribution, as quantiles, heatmaps and flags."""
    return [
        quantiles(
            "Overfitting score p50 / p95",
            "Spindle share per audit (higher: the answer rests on high-order, fragile interactions). "
            f"Dashed line: default flag threshold {OVERFITTING_THRESHOLD}.",
            "overfitting_score",
            "percentunit",
            threshold=OVERFITTING_THRESHOLD,
        ),
        quantiles(
            "Misattribution score p50 / p95",
            "Unreliable salient share per labelled audit (interactions resting on irrelevant or "
            f"forbidden players). Dashed line: default flag threshold {MISATTRIBUTION_THRESHOLD}.",
            "misattribution_score",
            "percentunit",
            threshold=MISATTRIBUTION_THRESHOLD,
        ),
        heatmap(
            "Overfitting score distribution",
            "Audits per second in each overfitting-score bucket; rows above 0.5 are flagged audits.",
            "overfitting_score",
            "percentunit",
        ),
        heatmap(
            "Misattribution score distribution",
            "Labelled audits per second in each misattribution-score bucket; rows above 0.3 are flagged.",
            "misattribution_score",
            "percentunit",
        ),
        with_threshold_line(
            timeseries(
                "Share of audits above threshold",
                "Per model, the fraction of audits whose score is above the default flag threshold, "
                "read exactly from the bucket at the threshold edge. The alerts use the same ratio; the "
                "dashed line is the misattribution alert's 25%.",
                [
                    (share_above("overfitting_score", OVERFITTING_THRESHOLD), "overfitting > 0.5 {{model}}"),
                    (share_above("misattribution_score", MISATTRIBUTION_THRESHOLD), "misattribution > 0.3 {{model}}"),
                ],
                "percentunit",
            ),
            0.25,
        ),
        stacked_bars(
            timeseries(
                "Flagged audits by reason",
                "Flags raised per second, by reason (overfitting, misattribution).",
                [(sum_rate(auditor("flagged_audits_total"), "reason"), "{{reason}}")],
                "ops",
            )
        ),
        label_colours(
            timeseries(
                "Misattribution by segment label",
                "Per model and level, the mean share of a labelled audit's salient interaction strength that "
                "rests on each player label: relevant, irrelevant, forbidden, unlabelled (a term counts under "
                "the most severe label of its players). level coarse: passages, segments, messages; level "
                "words: word players, including the refinement game inside the most salient passages. Per "
                "level the four lines sum to 1; forbidden + irrelevant is the mean misattribution score. "
                "Labels come from the caller's segments and spans, never their text or ids.",
                [(label_share(), "{{model}} {{level}}: {{label}}")],
                "percentunit",
                span=24,
            )
        ),
    ]


def structure_panels() -> list[gts.Panel]:
    """What the explanations look like: order profile, cancellation, sparsity."""
    strength = auditor("order_strength_total")
    by_sign = stacked_bars(
        timeseries(
            "Salient strength by order and sign",
            "Normalised salient interaction strength per second by order; negative interactions are "
            "drawn below the axis. Strength piling up at high orders means fragile explanations.",
            [(sum_rate(strength, "order, sign"), "order {{order}} {{sign}}")],
            "short",
        )
    ).override_by_regexp(".*negative", [md.DynamicConfigValue(id_val="custom.transform", value="negative-Y")])
    return [
        stacked_bars(
            timeseries(
                "Order profile (share of salient strength)",
                "Share of all salient strength at each interaction order (both signs). A healthy "
                "model's mass sits at low orders.",
                [
                    (
                        f"{sum_rate(strength, 'order')} / ignoring (order) group_left {sum_rate(strength)}",
                        "order {{order}}",
                    )
                ],
                "percentunit",
            )
        ),
        by_sign,
        quantiles(
            "Cancellation ratio p50 / p95",
            "2 min(P, Q) / (P + Q) per audit: how much positive and negative interactions cancel "
            "(1 = the output is a small difference of large opposing effects).",
            "cancellation_ratio",
            "percentunit",
        ),
        quantiles(
            "Sparsity p50 / p95 (salient interactions per audit)",
            "Number of salient interactions per audit: how many terms an explanation needs.",
            "sparsity",
            "short",
        ),
    ]


def pipeline_panels() -> list[gts.Panel]:
    """Sampling in, audits out: decisions, outcomes, the queue between them, drops and errors."""
    return [
        stacked_bars(
            timeseries(
                "Sampling decisions by reason",
                "One decision per served request, by reason: base_rate, low_confidence, caller_flag, "
                "labelled, forced (sampled) and not_sampled, rate_capped (not sampled).",
                [(sum_rate(auditor("sampling_decisions_total"), "reason"), "{{reason}}")],
                "reqps",
            )
        ),
        stacked_bars(
            timeseries(
                "Finished audits by outcome",
                "Finished audits per second by outcome: success, failed, timeout, skipped, cancelled, over_budget.",
                [(sum_rate(auditor("audits_total"), "outcome"), "{{outcome}}")],
                "ops",
            )
        ),
        timeseries(
            "Queue depth by model",
            "Audits waiting for the worker, per model. Growing steadily: the auditor is under-provisioned.",
            [(f"sum by (model) ({auditor('queue_depth')})", "{{model}}")],
            "short",
            span=8,
        ),
        timeseries(
            "Dropped audits by reason",
            "Sampled audits not queued per second: queue_full (back-pressure) or handoff_error.",
            [(sum_rate(auditor("audits_dropped_total"), "reason"), "{{reason}}")],
            "ops",
            span=8,
        ),
        timeseries(
            "Errors by stage",
            "Errors per second by pipeline stage (sampling, handoff, players, scoring, solver, "
            "metrics, store, timeout).",
            [(sum_rate(auditor("errors_total"), "stage"), "{{stage}}")],
            "ops",
            span=8,
        ),
        timeseries(
            "Store spool: waiting, flushed, dropped",
            "The audit store's outage spool (auditor/runtime/spool.py), summed over replicas: records "
            "waiting on local disk because the store (AUDITOR_STORE_URL) did not answer, records flushed "
            "into the chain per second, and records lost per second (store down and spool full). Waiting "
            "above 0 for long: InteractionAuditorStoreSpooling; any loss: InteractionAuditorStoreSpoolDropping.",
            [(f"sum by (model) ({auditor('store_spool_depth')})", "{{model}} waiting"),
             (sum_rate(auditor("store_spool_flushed_total"), "model"), "{{model}} flushed/s"),
             (sum_rate(auditor("store_spool_dropped_total"), "model"), "{{model}} dropped/s")],
            "short",
            span=24,
        ),
    ]


def cost_panels() -> list[gts.Panel]:
    """What the audits cost: time per audit, forward passes per audit, and the totals per second."""
    return [
        quantiles(
            "Audit duration p50 / p95 / p99",
            "Wall time of one audit (scoring + solving + metrics); the default budget is 120 s.",
            "audit_duration_seconds",
            "s",
            qs=(0.5, 0.95, 0.99),
            threshold=120,
        ),
        quantiles(
            "Forward passes per audit p50 / p95",
            "Masked forward passes (sequences) per audit: 2^n for n players, times the batch chunks.",
            "audit_forward_passes",
            "short",
        ),
        timeseries(
            "Forward passes / s",
            "Masked forward passes per second spent on audits, per model: the load the auditor adds.",
            [(sum_rate(auditor("audit_forward_passes_sum"), "model"), "{{model}}")],
            "short",
        ),
        timeseries(
            "Audit compute seconds / s",
            "Audit wall-seconds per second, per model: about the number of busy audit workers.",
            [(sum_rate(auditor("audit_duration_seconds_sum"), "model"), "{{model}}")],
            "s",
        ),
    ]


def serving_panels() -> list[gts.Panel]:
    """The served traffic the auditor samples from, from BentoML's own per-service HTTP metrics."""
    requests = serving("request_total")
    server_errors = serving("request_total", 'http_response_code=~"5.."')
    return [
        timeseries(
            "Requests / s by service and endpoint",
            "HTTP requests per second by BentoML service (runner_name), endpoint and status code.",
            [
                (
                    sum_rate(requests, "runner_name, endpoint, http_response_code"),
                    "{{runner_name}} {{endpoint}} {{http_response_code}}",
                )
            ],
            "reqps",
        ),
        timeseries(
            "Request latency p95 by service and endpoint",
            "95th percentile HTTP request duration by BentoML service and endpoint.",
            [
                (
                    quantile(0.95, serving("request_duration_seconds_bucket"), "runner_name, endpoint"),
                    "p95 {{runner_name}} {{endpoint}}",
                )
            ],
            "s",
        ),
        timeseries(
            "Requests in progress",
            "HTTP requests being handled now, by BentoML service and endpoint.",
            [(f"sum by (runner_name, endpoint) ({serving('request_in_progress')})", "{{runner_name}} {{endpoint}}")],
            "short",
        ),
        with_threshold_line(
            timeseries(
                "HTTP 5xx ratio by service",
                "Share of HTTP responses with a 5xx status, by BentoML service.",
                [(f"{sum_rate(server_errors, 'runner_name')} / {sum_rate(requests, 'runner_name')}", "{{runner_name}}")],
                "percentunit",
            ),
            0.01,
        ),
    ]


# --- dashboard --------------------------------------------------------------------------------------


def variables() -> list[Any]:
    """$datasource, then $job and $model read from build_info (every running auditor exports it)."""
    everything = md.VariableOption(selected=True, text="All", value="$__all")
    return [
        gd.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        gd.QueryVariable("job")
        .label("Job")
        .datasource(DATASOURCE)
        .query(f"label_values({PREFIX}build_info, job)")
        .refresh(md.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(md.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(everything),
        gd.QueryVariable("model")
        .label("Model")
        .datasource(DATASOURCE)
        .query(f'label_values({PREFIX}build_info{{job=~"$job"}}, model)')
        .refresh(md.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(md.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(everything),
    ]


ROWS: tuple[tuple[str, Any], ...] = (
    ("Overview", header_stats),
    ("Model quality: overfitting and misattribution", quality_panels),
    ("Explanation structure: order profile, cancellation, sparsity", structure_panels),
    ("Audit pipeline: sampling, queue, drops, errors", pipeline_panels),
    ("Audit cost", cost_panels),
    ("Serving (BentoML)", serving_panels),
)


def build_dashboard() -> md.Dashboard:
    """The dashboard model, with rows laid out by the SDK and panel ids numbered in order."""
    builder = (
        gd.Dashboard(TITLE)
        .uid(UID)
        .description("AND-OR interaction audits of a served LLM: quality signals, pipeline health, cost.")
        .tags(["interaction-auditor", "bentoml", "llm"])
        .editable()
        .tooltip(md.DashboardCursorSync.CROSSHAIR)
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .variables(variables())
    )
    for title, panels in ROWS:
        builder = builder.with_row(gd.Row(title))
        for panel in panels():
            builder = builder.with_panel(panel)
    dashboard = builder.build()
    for number, panel in enumerate(dashboard.panels or [], start=1):
        panel.id_val = number
    return dashboard


def render() -> str:
    """The JSON text written to OUTPUT: sorted keys, so regeneration diffs are minimal."""
    return json.dumps(build_dashboard(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def panel_queries(dashboard_json: dict[str, Any]) -> list[tuple[str, str]]:
    """Every ``(panel title, PromQL)`` of a dashboard JSON, row panels included, in order."""
    found: list[tuple[str, str]] = []
    for panel in dashboard_json.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                if target.get("expr"):
                    found.append((inner.get("title", ""), target["expr"]))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed JSON is stale")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text() if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run python -m dashboards.build", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"wrote {args.output} ({len(panel_queries(json.loads(text)))} queries)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
