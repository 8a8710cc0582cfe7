"""Benchmark of the exact values (``auditor.engine.exact``) against shapiq's ExactComputer.

For n = 10, 12, 14, 16 (``--ns``) and each index (Möbius, Co-Möbius, Shapley and Banzhaf values,
and SII, BII, STII, FSII of order ``--order``, default 2) on one random game, it times ours (median
of ``--repeats`` calls after a warm-up, numpy in and numpy out, conversion included) and shapiq's
ExactComputer (one call on a fresh computer whose game values are already evaluated, so only the
index itself is timed), and reports the ratio shapiq / ours and the largest absolute difference
over the sets shapiq reports (relative to max |v| = 1 here: the game is scaled to it).

shapiq's cost grows with its Python loops: O(3^n) for Möbius, 2^n x (number of sets up to the
order) for SII, BII and the values, 4^n for Co-Möbius at full order, and a dense 2^n x 2^n weight
matrix for FSII (2 GB at n = 14, 34 GB at n = 16). So by default each index runs shapiq only up to
the n in ``SHAPIQ_MAX_N`` (the whole default run then takes ~1.5-2 minutes on 2 shared cores) and the
table says "skipped" above; ``--shapiq-max-n N`` replaces that table by one limit for all indices.
shapiq's FSII is a least squares with a 1e8 penalty for its two equality constraints, so its
values are themselves only accurate to ~1e-8: expect a difference of that size there.

torch runs on one thread by default (``--threads``), as in ``bench/transforms.py``: on a shared
2-core machine a second thread mostly measures contention.

Examples::

    python bench/exact.py                        # n = 10, 12, 14, 16
    python bench/exact.py --ns 8 10 --json
    python bench/exact.py --ns 16 --shapiq-max-n 16 --indices Moebius SV   # shapiq at n = 16 too
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auditor.engine import exact  # noqa: E402

INDICES = ["Moebius", "Co-Moebius", "SV", "BV", "SII", "BII", "STII", "FSII"]
# the largest n at which shapiq runs by default (measured on 2 shared cores: Möbius 0.03 s at
# n = 10, 21 s at 16; Co-Möbius at full order 1 s at n = 10, ~16 s at 12; SII/BII/STII of order 2
# 1.5 s at 14; FSII needs a dense 2^n x 2^n matrix, 2 GB at n = 14)
SHAPIQ_MAX_N = {"Moebius": 16, "Co-Moebius": 12, "SV": 16, "BV": 16, "SII": 16, "BII": 16, "STII": 16, "FSII": 12}
VALUE_INDICES = {"SV", "BV"}


def ours_function(index: str, order: int) -> Callable[[np.ndarray], np.ndarray]:
    """Our call for an index, returning a length-2^n vector in shapiq's conventions."""
    k = 1 if index in VALUE_INDICES else (None if index in ("Moebius", "Co-Moebius") else order)
    return lambda values: exact.interaction_index(values, index, order=k)


def shapiq_call(values: np.ndarray, index: str, order: int) -> tuple[float, dict[tuple[int, ...], float]]:
    """Seconds of one ExactComputer call (game values evaluated beforehand) and its values by set."""
    from shapiq import ExactComputer

    n = int(np.log2(len(values)))
    weights = 1 << np.arange(n)
    computer = ExactComputer(lambda coalitions: values[(coalitions.astype(np.int64) * weights).sum(axis=1)],
                             n_players=n)
    computer.game_values  # noqa: B018 - evaluate the game outside the timed call
    k = 1 if index in VALUE_INDICES else (None if index in ("Moebius", "Co-Moebius") else order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        started = time.perf_counter()
        result = computer(index, k)
        seconds = time.perf_counter() - started
    return seconds, dict(result.dict_values)


def time_ours(function: Callable[[np.ndarray], np.ndarray], values: np.ndarray, repeats: int) -> tuple[float, np.ndarray]:
    result = function(values)  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function(values)
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def run_case(n: int, index: str, order: int, repeats: int, shapiq_max_n: int | None) -> dict[str, Any]:
    values = np.random.default_rng(n).normal(size=1 << n)
    values /= np.abs(values).max()
    ours_seconds, ours = time_ours(ours_function(index, order), values, repeats)
    row: dict[str, Any] = {"n": n, "index": index, "order": 1 if index in VALUE_INDICES else
                           (n if index in ("Moebius", "Co-Moebius") else order), "ours_seconds": ours_seconds}
    limit = SHAPIQ_MAX_N[index] if shapiq_max_n is None else shapiq_max_n
    if n > limit:
        row.update(shapiq_seconds=None, ratio=None, max_abs_diff=None,
                   note=f"shapiq skipped above n = {limit} (--shapiq-max-n)")
        return row
    shapiq_seconds, reference = shapiq_call(values, index, order)
    difference = max(abs(ours[sum(1 << i for i in players)] - value) for players, value in reference.items())
    row.update(shapiq_seconds=shapiq_seconds, ratio=shapiq_seconds / ours_seconds, max_abs_diff=float(difference),
               note=None)
    return row


def print_table(rows: list[dict[str, Any]], header: dict[str, Any]) -> None:
    print(f"# exact values vs shapiq {header['shapiq']} ExactComputer; torch {header['torch']}, "
          f"{header['threads']} thread(s), {header['machine']}")
    print(f"{'n':>3} {'index':<11} {'order':>5} {'ours':>11} {'shapiq':>11} {'shapiq/ours':>12} {'max |diff|':>11}")
    for row in rows:
        shapiq = "skipped" if row["shapiq_seconds"] is None else _t(row["shapiq_seconds"])
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:,.0f}x"
        diff = "-" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.1e}"
        print(f"{row['n']:>3} {row['index']:<11} {row['order']:>5} {_t(row['ours_seconds']):>11} {shapiq:>11} "
              f"{ratio:>12} {diff:>11}")
    skipped = sorted({row["note"] for row in rows if row["note"]})
    for note in skipped:
        print(f"note: {note}")


def _t(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ns", type=int, nargs="+", default=[10, 12, 14, 16], help="numbers of players")
    parser.add_argument("--indices", nargs="+", default=INDICES, choices=INDICES)
    parser.add_argument("--order", type=int, default=2, help="order of SII, BII, STII and FSII (default 2)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of ours per case (median)")
    parser.add_argument("--shapiq-max-n", type=int, default=None,
                        help="run shapiq up to this n for every index (default: per index, SHAPIQ_MAX_N)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    header = {"shapiq": _shapiq_version(), "torch": torch.__version__, "threads": args.threads,
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip()}
    rows = []
    for n in args.ns:
        for index in args.indices:
            rows.append(run_case(n, index, args.order, args.repeats, args.shapiq_max_n))
            if not args.json:
                print(f"  n = {n} {index}: done", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({**header, "rows": rows}))
    else:
        print_table(rows, header)
    return 0


def _shapiq_version() -> str:
    from importlib.metadata import version

    return version("shapiq")


if __name__ == "__main__":
    sys.exit(main())
