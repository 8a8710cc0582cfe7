"""Serving overhead of background auditing: LLM latency with audit rate 0 vs 0.2.

Starts a real ``bentoml serve`` of the repository (LLM + Auditor processes) on a loopback port for
each configuration, sends a fixed number of ``POST /generate`` requests with a fixed concurrency
(closed loop: each of the ``--concurrency`` clients sends its next request when the previous one is
answered), and reports client-side latency percentiles and throughput side by side, with the ratio
of the audited run to the unaudited one. Prompts are the testbed's audit prompts (deterministic).

Both configurations run the same server; only ``AUDITOR_SAMPLE_RATE`` differs (boosts and the
per-minute cap are switched off so the rate is exactly what is asked). With ``--rounds 2`` the
configurations run in ABBA order, which cancels a linear drift of background load.

Usage::

    python bench/serving.py                       # 2000 requests, concurrency 4, rates 0 and 0.2
    python bench/serving.py --rounds 2 --priorities idle,nice --out bench/results/serving.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from tests.serving import BentoServer  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def prompts(count: int, seed: int = 7) -> list[str]:
    from auditor.testbed import corpus

    return [p.prompt for p in corpus.audit_prompts(seed, count)]


async def run_load(url: str, texts: list[str], concurrency: int, max_new_tokens: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    next_index = 0
    lock = asyncio.Lock()

    async def client(http: httpx.AsyncClient) -> None:
        nonlocal next_index, errors
        while True:
            async with lock:
                if next_index >= len(texts):
                    return
                i = next_index
                next_index += 1
            t0 = time.perf_counter()
            r = await http.post("/generate", json={"prompt": texts[i], "max_new_tokens": max_new_tokens,
                                                   "request_id": f"bench-{i}-{time.time_ns()}"})
            dt = time.perf_counter() - t0
            if r.status_code == 200:
                latencies.append(dt)
            else:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits) as http:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return {"latencies": latencies, "errors": errors, "wall_s": wall}


@dataclass(frozen=True)
class Arm:
    """One server configuration: an audit rate and extra settings (e.g. the auditor's CPU priority)."""

    label: str
    rate: float
    env: tuple[tuple[str, str], ...] = ()


def parse_arm(text: str) -> Arm:
    """``LABEL:RATE[:KEY=VALUE,KEY=VALUE]``, e.g. ``raise:0.2:AUDITOR_FAULT=raise``."""
    label, _, rest = text.partition(":")
    rate, _, extra = rest.partition(":")
    pairs = tuple(tuple(kv.split("=", 1)) for kv in extra.split(",") if kv)
    if not label or not rate or any(len(kv) != 2 for kv in pairs):
        raise argparse.ArgumentTypeError(f"--arm wants LABEL:RATE[:KEY=VALUE,...], got {text!r}")
    return Arm(label, float(rate), pairs)  # type: ignore[arg-type]


def measure(arm: Arm, args: argparse.Namespace, texts: list[str]) -> dict[str, Any]:
    rate = arm.rate
    env = {
        "AUDITOR_SAMPLE_RATE": str(rate),
        "AUDITOR_LOW_CONFIDENCE_THRESHOLD": "none",
        "AUDITOR_MAX_AUDITS_PER_MINUTE": "none",
        "AUDITOR_MAX_NEW_TOKENS": str(args.max_new_tokens),
    }
    if args.model:
        env["AUDITOR_MODEL"] = args.model
    for kv in args.env:
        k, _, v = kv.partition("=")
        env[k] = v
    env.update(dict(arm.env))
    load_before = os.getloadavg()
    with BentoServer(env, startup_timeout=args.startup_timeout) as server:
        warm = asyncio.run(run_load(server.url, texts[: args.warmup], args.concurrency, args.max_new_tokens))
        del warm
        if rate > 0:  # measure the steady state: the auditor's one-off warm-up (kernel compile) is over
            server.wait_for(lambda: server.client().get("/auditor/status").json()["worker"].get("warm"),
                            timeout=300.0, interval=0.5)
        result = asyncio.run(run_load(server.url, texts[args.warmup:], args.concurrency, args.max_new_tokens))
        time.sleep(0.5)
        counters = {
            "sampled": sum(server.metric_value("interaction_auditor_sampling_decisions_total", reason=r)
                           for r in ("base_rate", "forced", "caller_flag", "labelled", "low_confidence")),
            "audits_finished": server.metric_value("interaction_auditor_audits_total"),
            "audits_dropped": server.metric_value("interaction_auditor_audits_dropped_total"),
        }
    lat = result["latencies"]
    n = len(lat)
    return {
        "arm": arm.label,
        "rate": rate,
        "env": dict(arm.env),
        "requests": n,
        "errors": result["errors"],
        "p50_ms": 1000 * percentile(lat, 50),
        "p90_ms": 1000 * percentile(lat, 90),
        "p99_ms": 1000 * percentile(lat, 99),
        "mean_ms": 1000 * statistics.fmean(lat) if lat else float("nan"),
        "throughput_rps": n / result["wall_s"] if result["wall_s"] > 0 else float("nan"),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        **counters,
        "latencies_ms": [round(1000 * x, 3) for x in lat],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="measured requests per run (after warm-up)")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--rates", default="0,0.2", help="comma-separated audit rates; the first is the baseline")
    ap.add_argument("--rounds", type=int, default=1, help="runs per arm, in ABBA order")
    ap.add_argument("--priorities", default=None,
                    help="comma-separated AUDITOR_AUDITOR_CPU_PRIORITY values (idle,nice,normal): each audited "
                         "rate runs once per priority, side by side (default: the server's setting)")
    ap.add_argument("--arm", action="append", type=parse_arm, default=[],
                    help="an extra configuration LABEL:RATE[:KEY=VALUE,...], e.g. raise:0.2:AUDITOR_FAULT=raise "
                         "(audits fail at once: the hand-off's cost alone)")
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--model", default=None, help="AUDITOR_MODEL (default: the testbed clean model)")
    ap.add_argument("--env", action="append", default=[], help="extra KEY=VALUE for the server")
    ap.add_argument("--startup-timeout", type=float, default=900.0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ap.add_argument("--raw", action="store_true", help="include every latency in the JSON")
    ap.add_argument("--out", default=None, help="also write the JSON report to this file")
    args = ap.parse_args(argv)

    rates = [float(r) for r in args.rates.split(",")]
    arms = [Arm(f"{rates[0]:g}", rates[0])]
    for rate in rates[1:]:
        if args.priorities:
            arms += [Arm(f"{rate:g}/{p}", rate, (("AUDITOR_AUDITOR_CPU_PRIORITY", p),))
                     for p in args.priorities.split(",")]
        else:
            arms.append(Arm(f"{rate:g}", rate))
    arms += args.arm
    if args.model is None:  # build the default model before timing anything
        from auditor.testbed.models import ensure_model

        ensure_model("clean")
    texts = prompts(args.requests + args.warmup)
    order: list[Arm] = []
    for r in range(args.rounds):
        order += arms if r % 2 == 0 else list(reversed(arms))
    runs = []
    for arm in order:
        print(f"# arm {arm.label}: {args.requests} requests, concurrency {args.concurrency} ...", file=sys.stderr)
        runs.append(measure(arm, args, texts))

    pooled = {}
    for arm in arms:
        label = arm.label
        mine = [x for x in runs if x["arm"] == label]
        every = [v for x in mine for v in x["latencies_ms"]]
        pooled[label] = {
            "arm": label,
            "rate": arm.rate,
            "env": dict(arm.env),
            "runs": len(mine),
            # percentiles of all latencies of all runs of this rate together
            "p50_ms": percentile(every, 50),
            "p90_ms": percentile(every, 90),
            "p99_ms": percentile(every, 99),
            "mean_ms": statistics.fmean(every),
            "run_p99_min_ms": min(x["p99_ms"] for x in mine),
            "run_p99_max_ms": max(x["p99_ms"] for x in mine),
            "throughput_rps": statistics.fmean(x["throughput_rps"] for x in mine),
            "audits_finished": sum(x["audits_finished"] for x in mine),
            "audits_dropped": sum(x["audits_dropped"] for x in mine),
            "sampled": sum(x["sampled"] for x in mine),
        }
    base = pooled[arms[0].label]
    ratios = {
        label: {k: arm[k] / base[k] if base[k] else float("nan")
                for k in ("p50_ms", "p99_ms", "mean_ms", "throughput_rps")}
        for label, arm in pooled.items()
    }
    import torch

    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    if not args.raw:
        for x in runs:
            x.pop("latencies_ms", None)
    config = {k: v for k, v in vars(args).items() if k not in ("json", "raw", "arm")}
    config["arms"] = [{"label": a.label, "rate": a.rate, "env": dict(a.env)} for a in arms]
    report = {"config": config, "machine": machine,
              "runs": runs, "pooled": list(pooled.values()), "ratios": ratios}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"serving benchmark: {args.requests} requests x {args.rounds} round(s) per arm, concurrency {args.concurrency}, "
          f"max_new_tokens {args.max_new_tokens}, model {args.model or 'testbed:clean'}")
    print(f"machine: {machine['cpus']} CPUs, {machine['platform']}, torch {machine['torch']}")
    head = (f"{'arm':>12} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'req/s':>8} {'run p99 range':>16} "
            f"{'sampled':>8} {'audited':>8} {'dropped':>8}")
    print(head)
    for label, p in pooled.items():
        spread = f"{p['run_p99_min_ms']:.0f}-{p['run_p99_max_ms']:.0f}"
        print(f"{label:>12} {p['p50_ms']:>9.1f} {p['p99_ms']:>9.1f} {p['mean_ms']:>9.1f} {p['throughput_rps']:>8.2f} "
              f"{spread:>16} {p['sampled']:>8.0f} {p['audits_finished']:>8.0f} {p['audits_dropped']:>8.0f}")
    for label in list(pooled)[1:]:
        r = ratios[label]
        print(f"ratio {label} vs {arms[0].label}: p50 x{r['p50_ms']:.3f}, p99 x{r['p99_ms']:.3f}, "
              f"mean x{r['mean_ms']:.3f}, throughput x{r['throughput_rps']:.3f}")
    for x in runs:
        print(f"  run {x['arm']}: p50 {x['p50_ms']:.1f} ms, p99 {x['p99_ms']:.1f} ms, "
              f"{x['throughput_rps']:.2f} req/s, load avg before {x['loadavg_before'][0]:.2f}, "
              f"errors {x['errors']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
