"""``interaction-auditor compare``: do two models explain the same answers with the same interactions?

Example::

    interaction-auditor compare --model-a clean --model-b overfit-5 --prompts prompts.jsonl --n 8
    interaction-auditor compare --model-a ./qwen --model-b ./deepseek --prompts legal.jsonl --answer a --json

``prompts.jsonl`` holds one object per line: ``{"prompt": "...", "answer": "gold answer (optional)",
"spans": ["word", [start, end], {"text": "Alice", "label": "forbidden"}] (optional)}``.
Both models are audited on every prompt with the same players, answer and kind of masking baseline;
the figures are defined in ``auditor.metrics.compare`` and docs/reports.md. A progress bar on stderr counts
prompts, so ``--json`` output on stdout stays machine-readable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from auditor.cli import EXIT_BAD_INPUT, EXIT_MISSING_RESOURCE, CliError

MAX_PLAYERS = 16  # = auditor.game.players.DEFAULT_MAX_PLAYERS (checked in tests/cli/test_cli.py)

EPILOG = """\
models: a local Hugging Face directory, a hub id, testbed:NAME, or a bare testbed name
  (clean, shortcut, overfit-1 .. overfit-5; built on first use, minutes on a CPU).
answer: gold = the "answer" of each line (the default when every line has one), a / b = the greedy
  answer of model A / B, teacher-forced in both models.
exit codes: 0 ok; 1 internal error; 2 bad input (prompts file, options, spans the tokenizers cut
  differently); 3 a model cannot be loaded (missing directory, unknown id, offline hub)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare two models' interactions on the same prompts",
        description="Audit two models on the same prompts, players, answer and baseline kind, and report the "
        "overlap of their salient interactions (next to chance), the strength-weighted signed IoU, order "
        "profiles side by side, which model carries more spindle-shaped (non-generalizable) strength, and the "
        "shared interactions of the joint objective of Chen et al. (ICLR 2024).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model-a", required=True, metavar="A", help="model A (path, hub id, testbed name)")
    parser.add_argument("--model-b", required=True, metavar="B", help="model B (path, hub id, testbed name)")
    parser.add_argument("--prompts", required=True, metavar="FILE", help="JSONL file of prompts (see below)")
    parser.add_argument("--answer", choices=["gold", "a", "b"], default=None,
                        help="which answer both models are scored on (default: gold when every line has one, else a)")
    parser.add_argument("--n", type=int, default=10,
                        help="players per prompt when a line has no spans (default 10; the joint LP allows 12)")
    parser.add_argument("--max-prompts", type=int, default=None, metavar="K", help="use only the first K prompts")
    parser.add_argument("--alpha", type=float, default=0.1, help="alpha of the joint objective (default 0.1)")
    parser.add_argument("--no-joint", action="store_true", help="skip the joint LP (shared interactions)")
    parser.add_argument("--qthres", type=float, default=0.04, help="bound on the q correction (default 0.04)")
    parser.add_argument("--salient-threshold", type=float, default=0.05,
                        help="salient: |I| >= this x the largest |I| of the audit (default 0.05)")
    parser.add_argument("--max-answer-tokens", type=int, default=16, help="answer tokens scored (default 16)")
    parser.add_argument("--baseline", default="auto", choices=["auto", "pad", "unk", "mean"],
                        help="masking baseline kind, the same in both models (auto: pad, else unk, else mean)")
    parser.add_argument("--chance-draws", type=int, default=1000,
                        help="random sets drawn for the chance percentile (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sets")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"],
                        help="weights dtype of both models (default float32)")
    parser.add_argument("--show", type=int, default=3, metavar="K",
                        help="prompts whose shared interactions are listed in the table output (default 3)")
    parser.add_argument("--out", default=None, metavar="FILE", help="also write the JSON report to FILE")
    parser.add_argument("--json", action="store_true", help="print the JSON report on stdout instead of tables")
    parser.set_defaults(handler=run)


def _check_ranges(args: argparse.Namespace) -> None:
    """The remaining numeric options and the output path, checked before any model is loaded (a
    comparison takes minutes: it must not fail at the end on a typo)."""
    if args.n > MAX_PLAYERS:
        raise CliError(f"--n {args.n} exceeds the cap of {MAX_PLAYERS} players (the game has 2^n states)",
                       EXIT_BAD_INPUT)
    if not 0.0 <= args.qthres < 1.0:
        raise CliError(f"--qthres must be in [0, 1), got {args.qthres}", EXIT_BAD_INPUT)
    if not 0.0 < args.salient_threshold <= 1.0:
        raise CliError(f"--salient-threshold must be in (0, 1], got {args.salient_threshold}", EXIT_BAD_INPUT)
    if args.max_answer_tokens < 1:
        raise CliError(f"--max-answer-tokens must be at least 1, got {args.max_answer_tokens}", EXIT_BAD_INPUT)
    if args.chance_draws < 1:
        raise CliError(f"--chance-draws must be at least 1, got {args.chance_draws}", EXIT_BAD_INPUT)
    if args.show < 0:
        raise CliError(f"--show must be at least 0, got {args.show}", EXIT_BAD_INPUT)
    if args.out:
        parent = Path(args.out).expanduser().resolve().parent
        if not parent.is_dir():
            raise CliError(f"--out: cannot write {args.out!r}: directory {str(parent)!r} does not exist",
                           EXIT_BAD_INPUT)


def _load_side(name: str, *, device: str, dtype: str) -> Any:
    """Load a model by path, hub id, ``testbed:NAME`` or a bare testbed name (``clean``, ``overfit-5``).

    Raises :class:`auditor.game.loading.ModelLoadError` with an actionable message.
    """
    from auditor.metrics.compare import ModelUnderTest
    from auditor.runtime.model_source import TESTBED_SCHEME, load_model
    from auditor.testbed.names import MODEL_NAMES

    source = f"{TESTBED_SCHEME}{name}" if name in MODEL_NAMES and not Path(name).is_dir() else name
    loaded = load_model(source, device=device, dtype=dtype)
    return ModelUnderTest(name=name, model=loaded.model, tokenizer=loaded.tokenizer, model_id=loaded.model_id,
                          revision=loaded.revision, path=loaded.path)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from auditor.metrics.compare import CompareInputError, compare_models, load_prompts
    from auditor.metrics.joint import JOINT_MAX_PLAYERS
    from auditor.game.loading import ModelLoadError
    from auditor.game.players import PlayerError

    if args.n < 1:
        raise CliError("--n must be at least 1", EXIT_BAD_INPUT)
    if not args.no_joint and args.n > JOINT_MAX_PLAYERS:
        raise CliError(f"--n {args.n} is above the joint LP's limit of {JOINT_MAX_PLAYERS}; lower it or pass --no-joint",
                       EXIT_BAD_INPUT)
    if not 0.0 <= args.alpha <= 1.0:
        raise CliError("--alpha must be in [0, 1]", EXIT_BAD_INPUT)
    if args.max_prompts is not None and args.max_prompts < 1:
        raise CliError("--max-prompts must be at least 1", EXIT_BAD_INPUT)
    _check_ranges(args)
    prompts_path = Path(args.prompts).expanduser()
    if not prompts_path.is_file():
        problem = "is not a file" if prompts_path.exists() else "does not exist"
        raise CliError(f"--prompts: {str(prompts_path)!r} {problem}", EXIT_BAD_INPUT)
    try:
        items = load_prompts(prompts_path, limit=args.max_prompts)
    except (CompareInputError, UnicodeDecodeError) as error:
        raise CliError(str(error), EXIT_BAD_INPUT) from error
    answer = args.answer or ("gold" if all(item.answer is not None for item in items) else "a")
    if answer == "gold" and any(item.answer is None for item in items):
        missing = [item.line for item in items if item.answer is None][:10]
        raise CliError(f"--answer gold needs an \"answer\" on every line of {args.prompts}; missing on line(s) "
                       f"{missing}", EXIT_BAD_INPUT)

    err = Console(stderr=True)
    sides = []
    for label, name in (("A", args.model_a), ("B", args.model_b)):
        with err.status(f"loading model {label}: {name}", spinner="dots"):
            try:
                sides.append(_load_side(name, device=args.device, dtype=args.dtype))
            except ModelLoadError as error:
                raise CliError(f"model {label}: {error}", EXIT_MISSING_RESOURCE) from error
    model_a, model_b = sides

    with Progress(TextColumn("comparing"), BarColumn(), MofNCompleteColumn(), TextColumn("prompts"),
                  TimeElapsedColumn(), TextColumn("[dim]{task.description}"), console=err,
                  transient=args.json) as bar:
        task = bar.add_task("", total=len(items))
        try:
            report = compare_models(
                model_a, model_b, items, answer=answer, n_players=args.n, qthres=args.qthres, alpha=args.alpha,
                salient_threshold=args.salient_threshold, max_answer_tokens=args.max_answer_tokens,
                baseline=None if args.baseline == "auto" else args.baseline, joint=not args.no_joint,
                chance_draws=args.chance_draws, seed=args.seed,
                progress=lambda done, total: bar.update(task, completed=done),
                phase=lambda text: bar.update(task, description=text),
            )
        except (CompareInputError, PlayerError) as error:
            raise CliError(str(error), EXIT_BAD_INPUT) from error
        except ValueError as error:  # e.g. prompt plus answer longer than the context
            raise CliError(str(error), EXIT_BAD_INPUT) from error

    text = report.model_dump_json(indent=2)
    if args.out:
        Path(args.out).expanduser().write_text(text + "\n", encoding="utf-8")
    if args.json:
        sys.stdout.write(text + "\n")
        return 0
    _print_tables(Console(), report, args.show)
    return 0


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _print_tables(console: Any, report: Any, show: int) -> None:
    from rich.table import Table

    a, b, agg, s = report.model_a, report.model_b, report.aggregate, report.settings
    console.print(f"[bold]A[/bold] = {a.name} ({a.model_id}{', rev ' + a.revision if a.revision else ''})   "
                  f"[bold]B[/bold] = {b.name} ({b.model_id}{', rev ' + b.revision if b.revision else ''})")
    console.print(f"{agg.prompts} prompts · answer: {s.answer} · baseline: {s.baseline} · qthres {s.qthres} · "
                  f"salient >= {s.salient_threshold} x max · joint alpha {s.alpha if s.joint else 'off'}",
                  highlight=False)

    table = Table(title="overlap of salient interactions (mean over prompts)")
    table.add_column("figure")
    table.add_column("A in B", justify="right")
    table.add_column("B in A", justify="right")
    table.add_row("salient in the other model, same sign", _pct(agg.overlap_a_in_b), _pct(agg.overlap_b_in_a))
    table.add_row("random sets of equal size (chance)", _pct(agg.chance_a_in_b), _pct(agg.chance_b_in_a))
    table.add_row("strength-weighted signed IoU", _num(agg.iou), "")
    table.add_row("salient interactions per prompt (A, B)", _num(a.mean_salient, 1), _num(b.mean_salient, 1))
    if s.joint:
        table.add_row("joint: shared interactions per prompt", _num(agg.mean_shared, 1), "")
        table.add_row("joint: share of own salient strength not shared", _pct(a.mean_unshared_share),
                      _pct(b.mean_unshared_share))
    console.print(table)

    spindle = Table(title="non-generalizable (spindle-shaped) strength")
    spindle.add_column("model")
    spindle.add_column("window overfitting", justify="right")
    spindle.add_column("mean per prompt", justify="right")
    spindle.add_row(f"A {a.name}", _num(a.window_overfitting), _num(a.mean_overfitting))
    spindle.add_row(f"B {b.name}", _num(b.window_overfitting), _num(b.mean_overfitting))
    console.print(spindle)
    if agg.more_non_generalizable in ("a", "b"):
        who = a.name if agg.more_non_generalizable == "a" else b.name
        console.print(f"-> [bold]{who}[/bold] carries more spindle-shaped (non-generalizable) strength "
                      f"(B - A = {agg.spindle_margin:+.3f}; B higher on {agg.prompts_b_more_spindle}/{agg.prompts} "
                      "prompts)", highlight=False)
    elif agg.more_non_generalizable == "tie":
        console.print("-> both models carry the same spindle share")

    orders = Table(title="order profiles (salient strength / |v(N) - v(empty)|, mean over prompts)")
    for column in ("order", "A +", "A -", "B +", "B -"):
        orders.add_column(column, justify="right")
    for m in range(max(len(a.order_profile_positive), len(b.order_profile_positive))):
        def cell(values: list[float]) -> str:
            return f"{values[m]:.3f}" if m < len(values) else "–"

        orders.add_row(str(m + 1), cell(a.order_profile_positive), cell(a.order_profile_negative),
                       cell(b.order_profile_positive), cell(b.order_profile_negative))
    console.print(orders)

    per = Table(title="per prompt")
    for column in ("#", "n", "answer", "sal A", "sal B", "A in B (chance)", "B in A (chance)", "IoU",
                   "overfit A", "overfit B", "shared"):
        per.add_column(column, justify="left" if column == "answer" else "right")
    for p in report.prompts:
        per.add_row(str(p.index + 1), str(p.n), repr(p.answer), str(p.a.salient), str(p.b.salient),
                    f"{_pct(p.overlap_a_in_b)} ({_pct(p.chance_a_in_b)})",
                    f"{_pct(p.overlap_b_in_a)} ({_pct(p.chance_b_in_a)})", _num(p.iou), _num(p.a.overfitting),
                    _num(p.b.overfitting), str(len(p.joint.shared)) if p.joint else "–")
    console.print(per)

    for p in report.prompts[:max(show, 0)]:
        if not p.joint or not p.joint.shared:
            continue
        shared = Table(title=f"prompt {p.index + 1}: interactions shared in the joint split (strongest first)")
        for column in ("kind", "players", "A", "B", "same sign"):
            shared.add_column(column, justify="right" if column in ("A", "B") else "left")
        for t in p.joint.shared[:8]:
            joiner = " & " if t.kind == "and" else " | "
            shared.add_row(t.kind.upper(), joiner.join(t.words), f"{t.value_a:+.3f}", f"{t.value_b:+.3f}",
                           "yes" if t.same_sign else "no")
        console.print(shared)
