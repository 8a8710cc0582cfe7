"""End to end: a real Prometheus scrapes the real service, then every dashboard query and every rule
is checked through Prometheus' HTTP API.

What runs (all on 127.0.0.1, free ports, temporary directories, every process ended afterwards):

1. a tiny random-init Llama saved as a Hugging Face model directory (``tests/tiny_models.py``);
2. ``bentoml serve`` of this repository (``bentofile.yaml``: the LLM service and, through
   ``bentoml.depends``, the auditor service) serving that model with audit rate 1.0, with its own
   ``BENTOML_HOME`` so its Prometheus multiprocess directory is private to this test;
3. Debian's ``prometheus`` with ``scrape_interval: 1s``, ``evaluation_interval: 1s`` and
   ``dashboards/prometheus/rules.yml`` loaded, scraping the service's ``/metrics``;
4. bounded traffic: a dozen ``POST /generate`` requests, some with labelled spans (so the
   misattribution histogram is fed), some forced; then the test waits for the audits to finish.

Then: every panel query of the dashboard (``$__rate_interval`` -> 20s, ``$job``/``$model`` -> ``.*``)
returns at least one series, the $job/$model variables list the service, every rule is healthy,
and every recording rule produces a series. Takes a minute or two on CPU.

Then (``test_recording_rules_add_two_replicas_exactly_once``, ~20 s, no model): the same
Prometheus setup scraping two replicas of the project's telemetry with known, different counts, to
check that the recording rules add replicas up exactly once (see the section below).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tools import require_program
import yaml
from prometheus_client.parser import text_string_to_metric_families


pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # dashboards/ is not an installed package: import it from the checkout
    sys.path.insert(0, str(REPO))

from dashboards import build  # noqa: E402

RULES = REPO / "dashboards" / "prometheus" / "rules.yml"
JOB = "interaction-auditor"
MODEL_LABEL = "e2e-tiny"
RATE_INTERVAL = "20s"
STARTUP_TIMEOUT_S = 300
AUDIT_TIMEOUT_S = 240

PROMPT = "The defendant Alice stole a bicycle from the shop and was charged with"
SPANS = [
    {"text": "Alice", "label": "relevant"},
    {"text": "stole", "label": "relevant"},
    {"text": "bicycle", "label": "irrelevant"},
    {"text": "shop", "label": "forbidden"},
]
PLAIN_PROMPTS = [
    "The defendant Bob hit a neighbour in the street and was charged with",
    "What is the capital of France? The capital of France is",
    "Carol forged a cheque at the bank; she was charged with",
]
# Recording rules that cannot have data on a fresh server: the baseline looks 1h into the past.
NEEDS_HISTORY = {"model:interaction_auditor_overfitting_score_above_threshold:ratio_rate7d_offset1h"}


# --- helpers ----------------------------------------------------------------------------------------


def require(name: str) -> str:
    return require_program(name, install="apt-get install prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 1.0,
             alive: subprocess.Popen | None = None, log: Path | None = None) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` (and the log) otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if alive is not None and alive.poll() is not None:
            pytest.fail(f"process exited with {alive.returncode} while waiting for {what}\n{tail(log)}")
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, OSError, ValueError) as e:
            last_error = e
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_error})\n{tail(log)}")


def tail(log: Path | None, lines: int = 60, problems_only: bool = False) -> str:
    """The end of a process log for failure messages (optionally only warnings and errors)."""
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()
    if problems_only:
        text = [line for line in text if any(w in line for w in ("WARNING", "ERROR", "Error", "Traceback"))]
    return f"--- {log.name} ---\n" + "\n".join(text[-lines:])


@contextlib.contextmanager
def spawn(cmd: list[str], log: Path, **kwargs: Any) -> Iterator[subprocess.Popen]:
    """Start ``cmd`` in its own process group and end that group (TERM, then KILL) afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        # Workers may outlive the arbiter for a moment: make sure the group is gone.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def scrape(url: str) -> dict[str, float]:
    """The service's /metrics as {'name{label="v",...}': value} (samples only)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            samples[f"{s.name}{{{labels}}}"] = s.value
    return samples


def total(samples: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in samples.items() if k.startswith(prefix + "{"))


def by_label(samples: dict[str, float], prefix: str) -> dict[str, float]:
    return {k: v for k, v in samples.items() if k.startswith(prefix + "{")}


def substitute(expr: str) -> str:
    """A Grafana query as Prometheus receives it with every variable on "All"."""
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$job", ".*").replace("$model", ".*")


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require("prometheus")  # before anything slow is started
    return tmp_path_factory.mktemp("prometheus-e2e")


@pytest.fixture(scope="module")
def tiny_model(workdir: Path) -> Path:
    """A tiny random-init Llama with its tokenizer, saved as a Hugging Face model directory."""
    if not (REPO / "bentofile.yaml").exists() or not (REPO / "service" / "llm.py").exists():
        pytest.fail("the real service is missing (bentofile.yaml, service/llm.py): nothing to scrape")
    target = workdir / "model"
    code = textwrap.dedent(f"""
        from tests.tiny_models import build_model, build_tokenizer
        tokenizer = build_tokenizer()
        model = build_model("llama", tokenizer)
        model.save_pretrained({str(target)!r})
        tokenizer.save_pretrained({str(target)!r})
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return target


@pytest.fixture(scope="module")
def service(workdir: Path, tiny_model: Path) -> Iterator[str]:
    """``bentoml serve`` of the repository on a free loopback port, audit rate 1.0."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUDITOR_")}
    env.update({
        "BENTOML_HOME": str(workdir / "bentoml-home"),  # private Prometheus multiprocess directory
        "BENTOML_DO_NOT_TRACK": "True",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "AUDITOR_MODEL": str(tiny_model),
        "AUDITOR_MODEL_LABEL": MODEL_LABEL,
        "AUDITOR_SAMPLE_RATE": "1.0",
        "AUDITOR_N_PLAYERS": "4",
        "AUDITOR_ANSWER_TOKENS": "2",
        "AUDITOR_MAX_NEW_TOKENS": "3",
        "AUDITOR_STORE_URL": f"sqlite:///{workdir / 'audits.sqlite'}",
    })
    log = workdir / "bentoml.log"
    cmd = [sys.executable, "-m", "bentoml", "serve", ".", "--host", "127.0.0.1", "--port", str(port)]
    with spawn(cmd, log, cwd=REPO, env=env) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_for("the service to be ready", lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200,
                 STARTUP_TIMEOUT_S, alive=proc, log=log)
        yield url
    assert proc.poll() is not None, "bentoml serve did not end"


@pytest.fixture(scope="module")
def prometheus(workdir: Path, service: str) -> Iterator[str]:
    """Debian's Prometheus scraping the service every second, with rules.yml loaded."""
    binary = require("prometheus")
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{
            "job_name": JOB,
            "metrics_path": "/metrics",
            "static_configs": [{"targets": [service.removeprefix("http://")]}],
        }],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log = workdir / "prometheus.log"
    cmd = [binary, f"--config.file={config_path}", f"--storage.tsdb.path={workdir / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"]
    with spawn(cmd, log, cwd=workdir) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_for("Prometheus to be ready", lambda: httpx.get(f"{url}/-/ready", timeout=5).status_code == 200,
                 60, alive=proc, log=log)
        wait_for("the first successful scrape", lambda: [r for r in query(url, f'up{{job="{JOB}"}} == 1')],
                 60, alive=proc, log=log)
        yield url


def query(prometheus_url: str, expr: str) -> list[dict]:
    response = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": expr}, timeout=30)
    body = response.json()
    if body.get("status") != "success":
        raise AssertionError(f"query failed: {body.get('errorType')}: {body.get('error')}\n{expr}")
    return body["data"]["result"]


@pytest.fixture(scope="module")
def traffic(service: str, prometheus: str, workdir: Path) -> dict[str, float]:
    """Send bounded traffic, wait until every sampled request's audit has finished and Prometheus
    has scraped the result; return the service's final metric samples."""
    requests = []
    for i in range(12):
        body: dict[str, Any] = {"prompt": PLAIN_PROMPTS[i % 3], "max_new_tokens": 3}
        if i % 3 == 0:
            body = {"prompt": PROMPT, "max_new_tokens": 3, "audit": {"spans": SPANS}}
        elif i % 4 == 1:
            body["audit"] = {"force": True}
        requests.append(body)
    with httpx.Client(base_url=service, timeout=60) as client:
        for body in requests:
            response = client.post("/generate", json=body)
            assert response.status_code == 200, response.text
            time.sleep(0.5)  # spread the traffic over a few scrapes

    def audits_done() -> dict[str, float] | None:
        samples = scrape(service)
        sampled = total(samples, "interaction_auditor_sampling_decisions_total") - sum(
            v for k, v in samples.items()
            if k.startswith("interaction_auditor_sampling_decisions_total{")
            and ('reason="not_sampled"' in k or 'reason="rate_capped"' in k)
        )
        finished = total(samples, "interaction_auditor_audits_total")
        dropped = total(samples, "interaction_auditor_audits_dropped_total")
        return samples if sampled >= len(requests) and finished + dropped >= sampled else None

    samples = wait_for("the audits of the traffic to finish", audits_done, AUDIT_TIMEOUT_S, interval=2,
                       log=workdir / "bentoml.log")
    finished = total(samples, "interaction_auditor_audits_total")
    wait_for("Prometheus to scrape the finished audits",
             lambda: [r for r in query(prometheus, "sum(interaction_auditor_audits_total)")
                      if float(r["value"][1]) >= finished], 30)
    return samples


def diagnosis(samples: dict[str, float]) -> str:
    """What the service did, for failure messages: audits by outcome, errors by stage."""
    return json.dumps({
        "audits": by_label(samples, "interaction_auditor_audits_total"),
        "errors": {k: v for k, v in by_label(samples, "interaction_auditor_errors_total").items() if v},
        "dropped": by_label(samples, "interaction_auditor_audits_dropped_total"),
    }, indent=1)


# --- tests ------------------------------------------------------------------------------------------


def test_every_panel_query_returns_a_series(prometheus: str, traffic: dict[str, float], workdir: Path) -> None:
    dashboard = json.loads(build.render())
    empty = []
    for title, expr in build.panel_queries(dashboard):
        if not query(prometheus, substitute(expr)):
            empty.append(f"{title}: {substitute(expr)}")
    assert not empty, (
        "panel queries with no series against the real service:\n  " + "\n  ".join(empty)
        + f"\nservice metrics: {diagnosis(traffic)}\n{tail(workdir / 'bentoml.log', 10, problems_only=True)}"
    )


def test_audits_succeeded_and_fed_the_quality_metrics(traffic: dict[str, float]) -> None:
    """The quality panels above must show real observations, not only the series pre-created at 0:
    successful audits, labelled ones in the misattribution histogram, order strengths."""
    model = f'model="{MODEL_LABEL}"'
    observed = {
        "successful audits": traffic.get(f'interaction_auditor_audits_total{{{model},outcome="success"}}', 0),
        "overfitting scores": traffic.get(f"interaction_auditor_overfitting_score_count{{{model}}}", 0),
        "misattribution scores (labelled audits)":
            traffic.get(f"interaction_auditor_misattribution_score_count{{{model}}}", 0),
        "order strength": total(traffic, "interaction_auditor_order_strength_total"),
        "forward passes": traffic.get(f"interaction_auditor_audit_forward_passes_sum{{{model}}}", 0),
    }
    assert all(v > 0 for v in observed.values()), f"{observed}\n{diagnosis(traffic)}"


def test_variables_list_the_service(prometheus: str, traffic: dict[str, float]) -> None:
    """What the $job and $model variables' label_values() queries list in Grafana."""
    def values(label: str, match: str) -> list[str]:
        response = httpx.get(f"{prometheus}/api/v1/label/{label}/values", params={"match[]": match}, timeout=10)
        return response.json()["data"]

    assert JOB in values("job", "interaction_auditor_build_info")
    assert values("model", f'interaction_auditor_build_info{{job=~"{JOB}"}}') == [MODEL_LABEL]


def test_every_rule_group_evaluates_without_errors(prometheus: str, traffic: dict[str, float]) -> None:
    def evaluated() -> list[dict] | None:
        groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        return rules if rules and all(r["health"] != "unknown" for r in rules) else None

    rules = wait_for("every rule to be evaluated once", evaluated, 30)
    expected = yaml.safe_load(RULES.read_text())
    assert len(rules) == sum(len(g["rules"]) for g in expected["groups"])
    unhealthy = [f"{r['name']}: {r['health']} {r.get('lastError', '')}" for r in rules if r["health"] != "ok"]
    assert not unhealthy, "rules failing to evaluate:\n  " + "\n  ".join(unhealthy)


def test_recording_rules_produce_series(prometheus: str, traffic: dict[str, float]) -> None:
    """Each recorded series exists: the rules' metric names and label values (le="0.3", reasons,
    outcomes) match what the service really exports."""
    records = [r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r]

    def absent() -> list[str]:
        return [name for name in records if name not in NEEDS_HISTORY and not query(prometheus, name)]

    missing = absent()
    for _ in range(10):  # rules run every second: allow a few evaluations after the last scrape
        if not missing:
            break
        time.sleep(1)
        missing = absent()
    assert not missing, f"recording rules without series: {missing}\nservice metrics: {diagnosis(traffic)}"


# --- two replicas: the recording rules aggregate across instances ------------------------------------
#
# Two "replicas", each as BentoML runs one: two worker processes writing the project's telemetry
# (AuditorTelemetry) into one PROMETHEUS_MULTIPROC_DIR, and a /metrics endpoint serving the project's
# exposition() of that directory. The workers count a known plan of events, per tick, only after the
# test says go (Prometheus has then already scraped every series at 0, so rate() has nothing to
# extrapolate at the start), then stop and stay alive. Prometheus scrapes both replicas as two
# instances of one job, every second, with rules.yml loaded. Expected values are computed here from
# the plans: exact for raw sums and gauges; for rate()/increase() over a window that holds the whole
# history, the recorded value times the window is the known total, over-estimated at most by
# Prometheus' extrapolation to the window's end (below one scrape interval of a >= 10 s history).

REPLICA_WORKER = r"""
import json, sys, time
from pathlib import Path
from auditor.runtime.records import AuditRecord
from auditor.runtime.telemetry import AuditorTelemetry
model, go, done, ticks, plan = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
telemetry = AuditorTelemetry(model)  # every series pre-created at 0, in this process's multiprocess files
telemetry.set_spool_depth(plan["spool_depth"])  # the replica's workers share one spool: the same depth
while not go.exists():
    time.sleep(0.05)
for _ in range(ticks):
    for reason, n in plan["sampling"].items():
        for _ in range(n):
            telemetry.record_sampling(reason)
    for outcome, n in plan["audits"].items():
        for _ in range(n):
            telemetry.record_audit(AuditRecord(request_id="r", outcome=outcome, cost={"seconds": 1.0}))
    for _ in range(plan["spool_drops"]):
        telemetry.record_spool_drop()
    time.sleep(0.25)
done.touch()
time.sleep(3600)  # alive: live gauges count living processes only
"""

REPLICA_METRICS = r"""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from auditor.runtime.telemetry import exposition

class Metrics(BaseHTTPRequestHandler):
    def do_GET(self):
        body, content_type = exposition()  # aggregated over the replica's worker processes
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Metrics).serve_forever()
"""

FLEET_JOB, FLEET_MODEL, WORKERS, TICKS = "fleet", "fleet-model", 2, 20
PLANS = {  # per worker and tick; the replicas differ, so a lost or doubled one changes every answer
    "a": {"sampling": {"base_rate": 1, "not_sampled": 8}, "audits": {"success": 1}, "spool_drops": 1,
          "spool_depth": 3},
    "b": {"sampling": {"base_rate": 1, "forced": 1, "not_sampled": 1}, "audits": {"success": 1, "failed": 1},
          "spool_drops": 0, "spool_depth": 5},
}


def known_total(what: str, keys: tuple[str, ...] | None = None, replica: str | None = None) -> int:
    """What the plans add up to over every worker and tick (``keys`` picks labels of ``what``)."""
    total = 0
    for name, plan in PLANS.items():
        if replica is not None and name != replica:
            continue
        counts = plan[what]
        n = counts if isinstance(counts, int) else sum(v for k, v in counts.items() if keys is None or k in keys)
        total += n * WORKERS * TICKS
    return total


def value(prometheus_url: str, expr: str) -> float:
    result = query(prometheus_url, expr)
    assert len(result) == 1, f"{expr}: {result}"
    return float(result[0]["value"][1])


@pytest.fixture
def two_replicas(tmp_path: Path) -> Iterator[tuple[str, Path, list[Path]]]:
    """Prometheus scraping two replicas (2 workers each) of the project's telemetry; yields the
    Prometheus URL, the go file and the workers' done markers."""
    binary = require("prometheus")
    env_base = {**{k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}, "PYTHONPATH": str(REPO)}
    go = tmp_path / "go"
    done: list[Path] = []
    targets = []
    with contextlib.ExitStack() as stack:
        for name, plan in PLANS.items():
            mp_dir = tmp_path / f"multiproc-{name}"
            mp_dir.mkdir()
            env = {**env_base, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}
            port = free_port()
            targets.append(f"127.0.0.1:{port}")
            stack.enter_context(spawn([sys.executable, "-c", REPLICA_METRICS, str(port)], tmp_path / f"{name}.log",
                                      env=env, cwd=REPO))
            for w in range(WORKERS):
                done.append(tmp_path / f"done-{name}{w}")
                stack.enter_context(spawn([sys.executable, "-c", REPLICA_WORKER, FLEET_MODEL, str(go), str(done[-1]),
                                           str(TICKS), json.dumps(plan)], tmp_path / f"{name}{w}.log", env=env,
                                          cwd=REPO))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [{"job_name": FLEET_JOB, "static_configs": [{"targets": targets}]}],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = tmp_path / "prometheus.log"
        proc = stack.enter_context(spawn(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"], log, cwd=tmp_path))
        url = f"http://127.0.0.1:{port}"
        wait_for("Prometheus to be ready", lambda: httpx.get(f"{url}/-/ready", timeout=5).status_code == 200,
                 60, alive=proc, log=log)
        # every worker's pre-created series scraped at 0 a few times before anything is counted
        zeros = (f'count_over_time(sum by (instance) (interaction_auditor_store_spool_depth{{job="{FLEET_JOB}"}})'
                 f'[1m:1s]) >= 3')
        wait_for("three scrapes of both replicas", lambda: len(query(url, zeros)) == 2, 90, alive=proc, log=log)
        yield url, go, done


def test_recording_rules_add_two_replicas_exactly_once(two_replicas: tuple[str, Path, list[Path]]) -> None:
    url, go, done = two_replicas
    job = f'job="{FLEET_JOB}"'
    assert value(url, f"sum(interaction_auditor_audits_total{{{job}}})") == 0  # nothing counted before go
    go.touch()
    wait_for("the replicas' workers to count their plans", lambda: all(p.exists() for p in done), 120)
    audits, drops = known_total("audits"), known_total("spool_drops")
    wait_for("Prometheus to scrape the final counts",
             lambda: value(url, f"sum(interaction_auditor_audits_total{{{job}}})") == audits
             and value(url, f"sum(interaction_auditor_store_spool_dropped_total{{{job}}})") == drops, 30)
    # >= 15 samples per series: Prometheus' extrapolation to the window's end then adds at most
    # 1.1 / 14 of the increase (the bounds below); then a few rule evaluations after the last change
    history = f'min(count_over_time(interaction_auditor_store_spool_depth{{{job}}}[5m]))'
    wait_for("15 scrapes of history", lambda: value(url, history) >= 15, 60)
    time.sleep(2.5)

    # the exposition: each replica reports its two workers' counts summed once
    per_instance = {r["metric"]["instance"]: float(r["value"][1])
                    for r in query(url, f"sum by (instance) (interaction_auditor_audits_total{{{job}}})")}
    assert sorted(per_instance.values()) == sorted(known_total("audits", replica=n) for n in PLANS)

    # gauges: one depth per replica (its workers share a spool), the replicas' depths added
    assert value(url, "model:interaction_auditor_store_spool_depth:sum") == sum(p["spool_depth"] for p in PLANS.values())

    def close_to_total(rule: str, window_s: float, total: int) -> None:
        got = value(url, rule) * window_s
        assert total <= got * (1 + 1e-9) and got <= total * (1 + 1.1 / 14), \
            f"{rule} x {window_s:.0f}s = {got:.1f}, known {total}"

    sampled = known_total("sampling", ("base_rate", "forced"))
    close_to_total("model:interaction_auditor_sampling_decisions:rate5m", 300, known_total("sampling"))
    close_to_total("model:interaction_auditor_sampled_decisions:rate5m", 300, sampled)
    close_to_total('model_outcome:interaction_auditor_audits:rate5m{outcome="success"}', 300,
                   known_total("audits", ("success",)))
    close_to_total('model_outcome:interaction_auditor_audits:rate5m{outcome="failed"}', 300,
                   known_total("audits", ("failed",)))
    close_to_total("model:interaction_auditor_store_spool_dropped:increase15m", 1, drops)

    # ratios pool the replicas' counts (not the mean of per-replica ratios: 0.389 and 0.25 here)
    def close_to_ratio(rule: str, expected: float) -> None:
        got = value(url, rule)
        assert abs(got - expected) <= 0.06 * expected, f"{rule} = {got:.4f}, pooled {expected:.4f}"

    close_to_ratio("model:interaction_auditor_sampling:ratio_rate5m", sampled / known_total("sampling"))
    close_to_ratio("model:interaction_auditor_audit_errors:ratio_rate15m",
                   known_total("audits", ("failed",)) / known_total("audits"))
