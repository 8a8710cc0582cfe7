"""Batched solver throughput on one device (the CUDA tensor path on a GPU) against scipy's HiGHS.

Why apart from ``bench/solver.py``: that script measures the CPU kernels in depth (minutes); the
GPU owes one number, certified samples per second of ``extract_batch`` with the games on the card
(``auditor.engine.simplex`` then runs ``simplex_tensor``, the batched tensor path), against HiGHS on
the same samples, and ``bench/gpu.sh`` needs it within a fixed time. The games are those of
``bench/games.py`` (seeds 100, 101, ...); HiGHS solves the first ``--highs-samples`` of them one by
one (``solver.highs_solve``, the O(3^n) formulation), ours solves a batch of exactly those samples
(the ratio: same samples) and then the whole ``--batch`` (throughput at size). A warm-up batch of 4
runs first (CUDA context, kernel compilation or numba's cache).

    python bench/solver_device.py --device cuda            # n = 10, planted and lm, batch 256, HiGHS on 32
    python bench/solver_device.py --device cpu --n 8 --batch 16 --highs-samples 4 --json   # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from auditor.engine.extraction import SolverOptions, extract_batch  # noqa: E402
from games import make_batch  # noqa: E402
from solver import QTHRES, TOL, highs_solve  # noqa: E402


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def ours(values: Any, device: str, budget: float) -> dict[str, Any]:
    """One ``extract_batch`` call on ``device``: seconds (synchronised), certified count, max gap."""
    games = torch.as_tensor(values, dtype=torch.float64, device=device)
    options = SolverOptions(time_limit=budget / len(values))
    _sync(device)
    started = time.perf_counter()
    results = extract_batch(games, qthres=QTHRES, options=options)
    _sync(device)
    seconds = time.perf_counter() - started
    certified = sum(r.gap <= TOL for r in results)
    return {"samples": len(values), "seconds": seconds, "certified": certified,
            "certified_per_second": certified / seconds, "max_gap": max(r.gap for r in results)}


def game_rows(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    values = make_batch(kind, args.n, max(args.batch, args.highs_samples), seed=100)
    ours(values[:4], args.device, args.budget)  # warm-up
    highs_seconds, highs_ok = 0.0, 0
    for game in values[: args.highs_samples]:
        started = time.perf_counter()
        highs_ok += highs_solve(game, "compact", args.highs_limit)["status"] == "optimal"
        highs_seconds += time.perf_counter() - started
    same = ours(values[: args.highs_samples], args.device, args.budget)
    big = ours(values[: args.batch], args.device, args.budget)
    return {
        "game": kind,
        "highs": {"samples": args.highs_samples, "seconds": highs_seconds, "optimal": highs_ok,
                  "samples_per_second": args.highs_samples / highs_seconds},
        "ours_same_samples": same,
        "ours_batch": big,
        # HiGHS's time over ours on exactly the same samples; None unless all of ours are certified
        "ratio_vs_highs": highs_seconds / same["seconds"] if same["certified"] == same["samples"] else None,
        "throughput_ratio_vs_highs": big["certified_per_second"] / (highs_ok / highs_seconds) if highs_ok else None,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--highs-samples", type=int, default=32)
    p.add_argument("--highs-limit", type=float, default=60.0, help="HiGHS time limit per sample, seconds")
    p.add_argument("--budget", type=float, default=120.0, help="time limit of one batched call, seconds")
    p.add_argument("--games", default="planted,lm")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as bench/solver.py)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device_name = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
                   else platform.processor() or platform.machine())
    load = os.getloadavg()[0]
    rows = [game_rows(kind, args) for kind in args.games.split(",") if kind]
    result = {"device": args.device, "device_name": device_name, "n": args.n, "batch": args.batch,
              "highs_samples": args.highs_samples, "threads": args.threads, "load_avg_1m_start": load,
              "load_avg_1m_end": os.getloadavg()[0], "rows": rows}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"extract_batch on {args.device} [{device_name}], n = {args.n}, {args.threads} CPU thread(s); "
              f"HiGHS on {args.highs_samples} samples, one thread")
        for r in rows:
            ratio = "-" if r["ratio_vs_highs"] is None else f"{r['ratio_vs_highs']:.1f}x"
            print(f"{r['game']:<8} HiGHS {r['highs']['samples_per_second']:8.1f}/s  ours (same {r['highs']['samples']}) "
                  f"{r['ours_same_samples']['certified_per_second']:8.1f}/s ({ratio})  ours (batch "
                  f"{r['ours_batch']['samples']}) {r['ours_batch']['certified_per_second']:8.1f}/s  "
                  f"max gap {r['ours_batch']['max_gap']:.1e}")
    return result


if __name__ == "__main__":
    main()
