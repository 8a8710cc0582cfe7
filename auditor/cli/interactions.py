"""``interaction-auditor interactions``: the model-agnostic entry point.

Anyone with any model (text, image, tabular) can compute its 2^n masked outputs and get the
certified AND-OR interactions, without this project knowing anything about the model.

Example::

    interaction-auditor interactions --values outputs.json --names judge,knife,alibi --json

The solver (torch, HiGHS), and even numpy, are imported only when the command runs, not when the
parser is built (``--help`` stays instant; tests/test_cli.py checks it in a fresh interpreter). A
spinner on stderr shows the solve (seconds to minutes at n = 14..20); ``--json`` output on stdout
stays machine-readable.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING

from auditor.cli import EXIT_BAD_INPUT, CliError

if TYPE_CHECKING:
    import numpy as np

    from auditor.interactions import Interactions

MAX_PLAYERS = 20  # = auditor.solver.MAX_PLAYERS (checked in tests/test_cli.py); the solver loads torch
SALIENT_THRESHOLD = 0.05  # = auditor.interactions.DEFAULT_SALIENT_THRESHOLD (checked in tests/test_cli.py)

EPILOG = """\
values: index k holds the output with exactly the players of the set bits of k present
  (k = 0: all masked, k = 2^n - 1: none masked); n <= 20.
exit codes: 0 ok; 1 internal error; 2 bad input (a missing or unreadable --values file, a length
  that is not 2^n, NaN or infinite entries, --names of the wrong length, options out of range)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "interactions",
        help="AND-OR interactions of any model's 2^n masked outputs",
        description=(
            "Read the 2^n outputs of a model on all masked versions of one input (binary order: "
            "bit i of the index is player i; index 0 = all masked) and print the salient AND-OR "
            "interactions at the certified optimum of the sparsity LP."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--values", required=True, type=Path, help="JSON list or .npy vector of length 2^n")
    parser.add_argument("--qthres", type=float, default=0.04, help="|q| <= qthres |v(N) - v(empty)| (default 0.04)")
    parser.add_argument("--and-only", action="store_true", help="AND interactions only (no OR terms)")
    parser.add_argument("--names", help="comma-separated player names, one per player")
    parser.add_argument(
        "--threshold", type=float, default=SALIENT_THRESHOLD,
        help=f"salience, relative to the strongest term (default {SALIENT_THRESHOLD})"
    )
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.set_defaults(handler=run)


def load_values(path: Path) -> np.ndarray:
    """Read the game's outputs; every way this can go wrong becomes a message naming the problem."""
    import numpy as np

    if not path.exists():
        raise CliError(f"--values: no such file: {path}", EXIT_BAD_INPUT)
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        else:
            values = np.asarray(json.loads(path.read_text()), dtype=np.float64)
    except (ValueError, TypeError, OSError) as error:
        raise CliError(f"--values: cannot read {path} as a JSON list or .npy vector: {error}") from error
    values = np.asarray(values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.number):
        raise CliError(f"--values: expected a flat list of numbers, got shape {values.shape}")
    length = len(values)
    if length < 2 or length & (length - 1):
        raise CliError(f"--values: length must be 2^n with n >= 1, got {length}")
    n = int(math.log2(length))
    if n > MAX_PLAYERS:
        raise CliError(f"--values: n = {n} players exceeds the limit of {MAX_PLAYERS}")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise CliError(f"--values: entry {bad} is NaN or infinite")
    return values


def run(args: argparse.Namespace) -> int:
    values = load_values(args.values)
    n = int(math.log2(len(values)))
    names = None
    if args.names is not None:
        names = [name.strip() for name in args.names.split(",")]
        if len(names) != n:
            raise CliError(f"--names: got {len(names)} names for {n} players")
    if not 0.0 <= args.qthres < 1.0:
        raise CliError(f"--qthres: must be in [0, 1), got {args.qthres}")
    if not 0.0 < args.threshold <= 1.0:
        raise CliError(f"--threshold: must be in (0, 1], got {args.threshold}")
    from rich.console import Console

    from auditor.solver import extract_interactions

    with Console(stderr=True).status(f"solving the AND-OR split LP for n = {n} players", spinner="dots"):
        result = extract_interactions(values, qthres=args.qthres, mode="and" if args.and_only else "and-or",
                                      names=names)
    if args.json:
        payload = result.to_dict()
        payload["salient"] = [term.to_dict() for term in result.salient(args.threshold)]
        payload["shapley"] = result.shapley().tolist()
        print(json.dumps(payload))
    else:
        print_table(result, args.threshold)
    return 0


def print_table(result: Interactions, threshold: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    salient = result.salient(threshold)
    table = Table(title=f"{len(salient)} salient interactions of {2 * (1 << result.n) - result.n - 1} possible")
    table.add_column("interaction")
    table.add_column("order", justify="right")
    table.add_column("value", justify="right")
    table.add_column("share of |v(N)|", justify="right")
    for term in salient:
        share = term.value / result.normaliser if result.normaliser else float("nan")
        table.add_row(term.label(result.names), str(term.order), f"{term.value:+.4f}", f"{share:+.1%}")
    console.print(table)
    console.print(
        f"objective {result.objective:.6g}  dual bound {result.dual_bound:.6g}  "
        f"certified gap {result.gap:.1e}  pivots {result.iterations}  tau {result.tau:.4g}  "
        f"({result.solve_seconds * 1000:.1f} ms)"
    )
