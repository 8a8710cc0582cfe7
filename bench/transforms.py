"""Benchmark of the interaction transforms: fast O(n 2^n) butterflies vs the dense 2^n x 2^n matrix.

For n = 8..16, float64, batch 1 and 16, and both transforms (AND = Harsanyi dividends, OR), it times
``auditor.engine.transforms.and_transform`` / ``or_transform`` against a torch matmul with the dense matrix
of the reference code (built as in ``bench/reference.py``), and reports time per call (median of
repeats), the ratio, memory, and the largest difference between the two results.

Each (n, batch) case runs in its own subprocess so that memory can be measured from the outside of
torch's allocator, as the extra peak resident memory of each phase: the process's peak (VmHWM) is
reset to its current RSS through ``/proc/self/clear_refs`` before the phase and read after it (the
fast transforms; then building the dense matrices and multiplying by them). ``ru_maxrss`` is no good
for this in a child process: it starts at the parent's RSS at fork time (measured: a child of an
800 MB parent reports 814 MB while its own peak is 14 MB); it is the fallback without procfs. The model bytes
next to them are what the method must hold besides its input: one output copy for the fast
transform (the OR transform makes up to three transient copies: complement, butterfly, negation),
the matrix plus the output for the dense one. Dense cases whose two matrices would exceed
``--dense-max-bytes`` (default 2 GB, i.e. n >= 14: one float64 matrix is 8 x 4^n bytes) are not run
and are reported as skipped, with the bytes they would need. Timings interleave fast and dense
calls so that both see the same machine load. torch runs on one thread by default (``--threads``):
on a shared 2-core machine, two threads made a batch-16 float64 matmul at n = 8 take 15 ms instead
of 0.13 ms (contention with other processes), which says nothing about either method.

Examples::

    python bench/transforms.py                  # n = 8..16, batch 1 and 16
    python bench/transforms.py --quick --json   # n = 8..12, fewer repeats
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _proc_status(key: str) -> int | None:
    """A ``/proc/self/status`` memory field (VmRSS, VmHWM) in bytes; None where there is no procfs."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False


class _PeakMeter:
    """Extra peak resident memory of one phase: VmHWM after it minus VmRSS before it, the peak being reset
    at the start (``/proc/self/clear_refs``). Falls back to ``ru_maxrss`` deltas where that is unavailable;
    note that a child's ``ru_maxrss`` starts at its parent's RSS at fork time, so it cannot see a phase
    that stays below it."""

    def __enter__(self) -> "_PeakMeter":
        self.exact = _reset_peak() and _proc_status("VmHWM") is not None
        self.start = _proc_status("VmRSS") if self.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return self

    def __exit__(self, *exc: object) -> None:
        end = _proc_status("VmHWM") if self.exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.delta = int(end - self.start)


def _time_call(fn, *args) -> float:
    started = time.perf_counter()
    fn(*args)
    return time.perf_counter() - started


def _child(n: int, batch: int, min_seconds: float, min_repeats: int, max_repeats: int,
           dense_max_bytes: float, threads: int | None) -> dict[str, Any]:
    """One (n, batch) case, run inside its own process; returns one row per transform."""
    import torch

    from auditor.engine.transforms import and_transform, or_transform
    from reference import and_matrix, or_matrix

    if threads:
        torch.set_num_threads(threads)
    size = 1 << n
    x = torch.randn(batch, size, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    and_transform(torch.randn(1, 4, dtype=torch.float64))  # warm up torch's kernels on a tiny input
    rss_start = _proc_status("VmRSS")

    fast = {"and": and_transform, "or": or_transform}
    with _PeakMeter() as fast_meter:
        for fn in fast.values():
            fn(x)
    outputs = {name: fn(x) for name, fn in fast.items()}

    matrix_bytes = 8 * size * size
    dense_needed = 2 * matrix_bytes  # both matrices are held during the interleaved timing
    dense_ok = dense_needed <= dense_max_bytes
    matrices: dict[str, Any] = {}
    diffs: dict[str, float | None] = {"and": None, "or": None}
    build_seconds = None
    dense_meter = None
    if dense_ok:
        with _PeakMeter() as dense_meter:
            started = time.perf_counter()
            m_and = and_matrix(n, torch.float64)
            m_or = or_matrix(n, torch.float64, m_and)
            build_seconds = time.perf_counter() - started
            matrices = {"and": m_and, "or": m_or}
            for name, m in matrices.items():
                dense_out = x @ m.t()
                # entry 0 differs by convention (reference OR row 0 = v(empty), ours -v(N)): compare 1..
                diffs[name] = float((dense_out[:, 1:] - outputs[name][:, 1:]).abs().max())

    rows = []
    for name, fn in fast.items():
        fast_times: list[float] = []
        dense_times: list[float] = []
        dense_fn = (lambda m=matrices.get(name): x @ m.t()) if dense_ok else None
        started = time.perf_counter()
        while len(fast_times) < max_repeats and (
            len(fast_times) < min_repeats or time.perf_counter() - started < min_seconds
        ):
            fast_times.append(_time_call(fn, x))
            if dense_fn is not None and (len(dense_times) < min_repeats or time.perf_counter() - started < min_seconds):
                dense_times.append(_time_call(dense_fn))
        fast_s = statistics.median(fast_times)
        dense_s = statistics.median(dense_times) if dense_times else None
        copies = 1 if name == "and" else 3
        rows.append({
            "n": n,
            "batch": batch,
            "transform": name,
            "fast_seconds": fast_s,
            "dense_seconds": dense_s,
            "speedup": (dense_s / fast_s) if dense_s else None,
            "fast_repeats": len(fast_times),
            "dense_repeats": len(dense_times),
            "fast_model_bytes": copies * 8 * batch * size,
            "dense_model_bytes": matrix_bytes + 8 * batch * size,
            "fast_rss_delta_bytes": fast_meter.delta,
            "dense_rss_delta_bytes": dense_meter.delta if dense_meter is not None else None,
            "rss_exact": fast_meter.exact,
            "dense_build_seconds": build_seconds,
            "dense_skipped": None if dense_ok else "memory",
            "dense_bytes_needed": dense_needed,
            "max_abs_diff": diffs[name],
        })
    return {"rows": rows, "rss_start_bytes": rss_start}


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _fmt_bytes(count: float | None) -> str:
    if count is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(count) >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n-min", type=int, default=8)
    p.add_argument("--n-max", type=int, default=16)
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes (default 1,16)")
    p.add_argument("--min-seconds", type=float, default=0.5, help="time each method for at least this long")
    p.add_argument("--min-repeats", type=int, default=5)
    p.add_argument("--max-repeats", type=int, default=200)
    p.add_argument("--dense-max-bytes", type=float, default=2e9,
                   help="skip dense cases whose two matrices need more (default 2e9)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: on a shared 2-core machine two threads make small "
                        "float64 GEMMs up to 100x slower through contention; 0 = torch's default)")
    p.add_argument("--quick", action="store_true", help="n = 8..12, 3 repeats, 0.1 s per method")
    p.add_argument("--json", action="store_true")
    p.add_argument("--_child", nargs=2, type=int, metavar=("N", "BATCH"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.n_max = min(args.n_max, 12)
        args.min_repeats, args.min_seconds = 3, 0.1

    if args._child:
        n, batch = args._child
        out = _child(n, batch, args.min_seconds, args.min_repeats, args.max_repeats,
                     args.dense_max_bytes, args.threads)
        print(json.dumps(out))
        return out

    import torch

    batches = [int(b) for b in args.batches.split(",")]
    load_start = os.getloadavg()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for n in range(args.n_min, args.n_max + 1):
        for batch in batches:
            command = [sys.executable, __file__, "--_child", str(n), str(batch),
                       "--min-seconds", str(args.min_seconds), "--min-repeats", str(args.min_repeats),
                       "--max-repeats", str(args.max_repeats), "--dense-max-bytes", str(args.dense_max_bytes)]
            if args.threads:
                command += ["--threads", str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                rows.append({"n": n, "batch": batch, "transform": "and+or", "error": done.stderr[-2000:]})
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            for row in result["rows"]:
                row["load_avg_1m"] = os.getloadavg()[0]
                rows.append(row)
            if not args.json:
                print(f"  n={n} batch={batch} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "torch": torch.__version__, "threads": args.threads or torch.get_num_threads()},
        "dtype": "float64",
        "load_avg_start": list(load_start),
        "load_avg_end": list(os.getloadavg()),
        "seconds_total": time.perf_counter() - started,
        "dense_max_bytes": args.dense_max_bytes,
        "rows": rows,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_table(report)
    return report


def _print_table(report: dict[str, Any]) -> None:
    m = report["machine"]
    print(f"Transforms, float64, fast butterflies vs dense matmul | {m['processor']}, {m['cpu_count']} CPUs, "
          f"torch {m['torch']}, threads {m['threads']} | load avg {report['load_avg_start'][0]:.2f} -> "
          f"{report['load_avg_end'][0]:.2f}")
    header = (f"{'n':>3} {'batch':>5} {'tf':>3} | {'fast/call':>10} {'dense/call':>11} {'dense/fast':>10} | "
              f"{'fast mem (model / rss)':>22} | {'dense mem (model / rss)':>26} | {'max|diff|':>9}")
    print(header)
    print("-" * len(header))
    for r in report["rows"]:
        if "error" in r:
            print(f"{r['n']:>3} {r['batch']:>5} error: {r['error'].strip().splitlines()[-1] if r['error'].strip() else '?'}")
            continue
        if r["dense_skipped"]:
            dense_time = "skipped"
            ratio = "-"
            dense_mem = f"needs {_fmt_bytes(r['dense_bytes_needed'])} (2 matrices)"
        else:
            dense_time = _fmt_time(r["dense_seconds"])
            ratio = f"{r['speedup']:.1f}x"
            dense_mem = f"{_fmt_bytes(r['dense_model_bytes'])} / {_fmt_bytes(r['dense_rss_delta_bytes'])}"
        fast_mem = f"{_fmt_bytes(r['fast_model_bytes'])} / {_fmt_bytes(r['fast_rss_delta_bytes'])}"
        diff = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.1e}"
        print(f"{r['n']:>3} {r['batch']:>5} {r['transform']:>3} | {_fmt_time(r['fast_seconds']):>10} {dense_time:>11} "
              f"{ratio:>10} | {fast_mem:>22} | {dense_mem:>26} | {diff:>9}")
    print(f"total {report['seconds_total']:.0f} s; dense rss = extra peak RSS for both matrices (AND and OR) "
          f"and their products; fast rss = extra peak RSS of both fast transforms.")


if __name__ == "__main__":
    main()
