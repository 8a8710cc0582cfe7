"""``interaction-auditor interactions``: the model-agnostic entry point.

Anyone with any model (text, image, tabular) can compute its 2^n masked outputs and get the
certified AND-OR interactions, without this project knowing anything about the model.

Example::

    interaction-auditor interactions --values outputs.json --names judge,knife,alibi --json
    interaction-auditor interactions --values outputs.json --index shapley      # exact, no LP
    interaction-auditor interactions --values outputs.json --index fsii --order 2 --json

Without ``--index`` it prints the sparse AND-OR fit (the LP). With ``--index`` it prints exact values
of the game itself (``auditor.engine.exact``): the Möbius transform, Shapley or Banzhaf values, or the
SII, STII, FSII or Banzhaf interaction index up to ``--order``.

The solver (torch, HiGHS), and even numpy, are imported only when the command runs, not when the
parser is built (``--help`` stays instant; tests/cli/test_cli.py checks it in a fresh interpreter). A
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

    from auditor.engine.interactions import Interactions

MAX_PLAYERS = 20  # = auditor.engine.extraction.MAX_PLAYERS (checked in tests/cli/test_cli.py); the solver loads torch
SALIENT_THRESHOLD = 0.05  # = auditor.engine.interactions.DEFAULT_SALIENT_THRESHOLD (checked in tests/cli/test_cli.py)

# --index NAME -> (shapiq's index name, default order: None = n); banzhaf is the Banzhaf value at
# order 1 and the Banzhaf interaction index above; shapley is the Shapley value (order 1 only)
EXACT_INDICES = {
    "moebius": ("Moebius", None), "shapley": ("SV", 1), "banzhaf": ("BII", 1),
    "sii": ("SII", 2), "stii": ("STII", 2), "fsii": ("FSII", 2),
}

EPILOG = """\
values: index k holds the output with exactly the players of the set bits of k present
  (k = 0: all masked, k = 2^n - 1: none masked); n <= 20.
--index: exact values of the game, no fit: moebius (all orders unless --order), shapley (values),
  banzhaf (values; interaction index with --order > 1), sii, stii, fsii (--order default 2). The
  table shows terms with |value| >= --threshold x the largest; --json gives "values" (per player
  for order-1 indices, else a length-2^n vector in binary order, 0 above --order) and "terms".
exit codes: 0 ok; 1 internal error; 2 bad input (a missing or unreadable --values file, a length
  that is not 2^n, NaN or infinite entries, --names of the wrong length, options out of range,
  --order without --index or outside 1..n, --qthres or --and-only with --index)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "interactions",
        help="AND-OR interactions of any model's 2^n masked outputs",
        description=(
            "Read the 2^n outputs of a model on all masked versions of one input (binary order: "
            "bit i of the index is player i; index 0 = all masked) and print the salient AND-OR "
            "interactions at the certified optimum of the sparsity LP, or, with --index, exact "
            "values of the game (Möbius, Shapley, Banzhaf, SII, STII, FSII)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--values", required=True, type=Path, help="JSON list or .npy vector of length 2^n")
    parser.add_argument("--qthres", type=float, default=None, help="|q| <= qthres |v(N) - v(empty)| (default 0.04)")
    parser.add_argument("--and-only", action="store_true", help="AND interactions only (no OR terms)")
    parser.add_argument("--index", choices=sorted(EXACT_INDICES),
                        help="print this exact index of the game instead of the AND-OR fit")
    parser.add_argument("--order", type=int, help="largest interaction order for --index (see below)")
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
    if args.qthres is not None and not 0.0 <= args.qthres < 1.0:
        raise CliError(f"--qthres: must be in [0, 1), got {args.qthres}")
    if not 0.0 < args.threshold <= 1.0:
        raise CliError(f"--threshold: must be in (0, 1], got {args.threshold}")
    if args.index is not None:
        return run_exact(args, values, n, names)
    if args.order is not None:
        raise CliError("--order: only with --index (the AND-OR fit has no order limit)")
    from rich.console import Console

    from auditor.engine.extraction import extract_interactions

    qthres = 0.04 if args.qthres is None else args.qthres
    with Console(stderr=True).status(f"solving the AND-OR split LP for n = {n} players", spinner="dots"):
        result = extract_interactions(values, qthres=qthres, mode="and" if args.and_only else "and-or", names=names)
    if result.extra.get("time_limit_hit"):
        Console(stderr=True).print(f"warning: the time limit stopped the solver; the gap {result.gap:.2e} "
                                   "is a proved bound, not a converged one")
    if args.json:
        payload = result.to_dict()
        payload["salient"] = [term.to_dict() for term in result.salient(args.threshold)]
        payload["shapley"] = result.shapley().tolist()  # exact, of v
        payload["shapley_of_fit"] = result.shapley_of_fit().tolist()  # of v + q
        print(json.dumps(payload))
    else:
        print_table(result, args.threshold)
    return 0


def run_exact(args: argparse.Namespace, values: np.ndarray, n: int, names: list[str] | None) -> int:
    """``--index``: exact values of the game as given (v(empty) included), from its 2^n outputs."""
    if args.qthres is not None:
        raise CliError("--qthres: only for the AND-OR fit, not with --index")
    if args.and_only:
        raise CliError("--and-only: only for the AND-OR fit, not with --index")
    index, default_order = EXACT_INDICES[args.index]
    order = args.order if args.order is not None else min(default_order or n, n)
    if not 1 <= order <= n:
        raise CliError(f"--order: must be between 1 and n = {n}, got {order}")
    if args.index == "shapley" and order != 1:
        raise CliError("--order: shapley values have order 1; use --index sii, stii or fsii for interactions")
    import numpy as np

    from auditor.engine.exact import interaction_index

    label = "BV" if index == "BII" and order == 1 else index
    vector = np.asarray(interaction_index(values, label, order=order))
    masks = [mask for mask in range(1, len(values)) if mask.bit_count() <= order]
    strongest = max((abs(vector[mask]) for mask in masks), default=0.0)
    terms = sorted((mask for mask in masks if strongest > 0 and abs(vector[mask]) >= args.threshold * strongest),
                   key=lambda mask: (-abs(vector[mask]), mask))
    if args.json:
        per_player = vector[[1 << i for i in range(n)]].tolist() if order == 1 else vector.tolist()
        payload = {
            "index": args.index, "shapiq_index": label, "order": order, "n": n, "names": names,
            "empty": float(vector[0]), "values": per_player,
            "terms": [{"mask": mask, "players": _players(mask), "order": mask.bit_count(),
                       "value": float(vector[mask])} for mask in terms],
        }
        print(json.dumps(payload))
        return 0
    from rich.console import Console
    from rich.table import Table

    normaliser = abs(values[-1] - values[0])
    table = Table(title=f"{args.index} (exact, order <= {order}): {len(terms)} of {len(masks)} terms shown")
    table.add_column("players")
    table.add_column("order", justify="right")
    table.add_column("value", justify="right")
    table.add_column("share of |v(N) - v(empty)|", justify="right")
    for mask in terms:
        players = ", ".join(names[i] if names else f"x{i}" for i in _players(mask))
        share = vector[mask] / normaliser if normaliser else float("nan")
        table.add_row(players, str(mask.bit_count()), f"{vector[mask]:+.6g}", f"{share:+.1%}")
    console = Console()
    console.print(table)
    console.print(f"empty set: {vector[0]:+.6g}  v(N) - v(empty): {values[-1] - values[0]:+.6g}")
    return 0


def _players(mask: int) -> list[int]:
    return [i for i in range(mask.bit_length()) if (mask >> i) & 1]


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
