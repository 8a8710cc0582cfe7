"""``interaction-auditor audit``: audit one prompt of a causal LM and print its top interactions.

Example::

    interaction-auditor audit --model ./my-model --prompt "Alice stole a bicycle. The charge is" \\
        --players 'Alice|stole|bicycle' --n 10 --json

Loading the model shows a spinner and scoring a progress bar on stderr (tokens pushed through the
model, then the LP solve), so ``--json`` output on stdout stays machine-readable. Options are checked
before the model is loaded, so a typo costs no model load.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from auditor.cli import EXIT_BAD_INPUT, EXIT_MISSING_RESOURCE, CliError

MAX_PLAYERS = 16  # = auditor.game.players.DEFAULT_MAX_PLAYERS (checked in tests/cli/test_cli.py)

EPILOG = """\
model: a local Hugging Face directory (with a fast tokenizer), a hub id (HF_HUB_OFFLINE=1 to use
  only the local cache), or testbed:NAME (clean, shortcut, overfit-1 .. overfit-5; built on first use).
exit codes: 0 ok; 1 internal error; 2 bad input (options out of range, spans not in the prompt, an
  empty prompt or answer, a prompt too long for the model); 3 the model cannot be loaded (missing
  directory, no config.json, unknown hub id or testbed name, device not available)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit",
        help="explain one answer of a causal LM with AND-OR interactions",
        description="Score the model's answer on all 2^n masked versions of the prompt and print the "
        "certified AND-OR interactions between the players (words or spans).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="Hugging Face hub id, local model directory, or testbed:NAME")
    parser.add_argument("--prompt", required=True, help="the prompt (with --chat: the user message)")
    parser.add_argument("--chat", action="store_true", help="render --prompt as a user message with the chat template")
    parser.add_argument("--system", default=None, help="system message (implies --chat)")
    parser.add_argument("--answer", default=None, help="answer text to score (default: the model's greedy answer)")
    parser.add_argument(
        "--players", default="auto",
        help="auto (largest single-word effects), random, or spans separated by '|', e.g. 'Alice|stole'",
    )
    parser.add_argument("--n", type=int, default=10, help="number of players for auto/random (default 10, cap 16)")
    parser.add_argument("--max-answer-tokens", type=int, default=16, help="answer tokens scored (default 16)")
    parser.add_argument("--single-token", action="store_true", help="score only the first answer token")
    parser.add_argument("--baseline", default="auto", choices=["auto", "pad", "unk", "mean"],
                        help="masking baseline embedding (auto: pad, else unk, else mean)")
    parser.add_argument("--qthres", type=float, default=0.04, help="bound on the q correction (fraction of |v(N)-v(0)|)")
    parser.add_argument("--mode", default="and-or", choices=["and-or", "and"])
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16", "auto"],
                        help="weights dtype (default float32; scores are computed in float32)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --players random")
    parser.add_argument("--top", type=int, default=10, help="interactions to print (default 10)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.set_defaults(handler=run)


def _players_arg(value: str) -> str | list[str]:
    if value in ("auto", "random"):
        return value
    spans = [s for s in value.split("|") if s.strip()]
    if not spans:
        raise CliError("--players needs 'auto', 'random' or spans separated by '|'", EXIT_BAD_INPUT)
    return spans


def _check_options(args: argparse.Namespace) -> str | list[str]:
    """Reject out-of-range options before the (slow) model load; returns the players argument."""
    players = _players_arg(args.players)
    if not args.prompt.strip():
        raise CliError("--prompt is empty", EXIT_BAD_INPUT)
    if args.n < 1:
        raise CliError(f"--n must be at least 1, got {args.n}", EXIT_BAD_INPUT)
    if args.n > MAX_PLAYERS:
        raise CliError(f"--n {args.n} exceeds the cap of {MAX_PLAYERS} players (the game has 2^n states)",
                       EXIT_BAD_INPUT)
    if isinstance(players, list) and len(players) > MAX_PLAYERS:
        raise CliError(f"--players: {len(players)} spans exceed the cap of {MAX_PLAYERS}", EXIT_BAD_INPUT)
    if not 0.0 <= args.qthres < 1.0:
        raise CliError(f"--qthres must be in [0, 1), got {args.qthres}", EXIT_BAD_INPUT)
    if args.max_answer_tokens < 1:
        raise CliError(f"--max-answer-tokens must be at least 1, got {args.max_answer_tokens}", EXIT_BAD_INPUT)
    if args.top < 1:
        raise CliError(f"--top must be at least 1, got {args.top}", EXIT_BAD_INPUT)
    if args.answer == "":
        raise CliError("--answer is empty: nothing to score (leave it out to score the model's own answer)",
                       EXIT_BAD_INPUT)
    return players


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from auditor.audit import audit_prompt
    from auditor.game.loading import ModelLoadError
    from auditor.runtime.model_source import load_model
    from auditor.game.players import PlayerError

    players = _check_options(args)
    err = Console(stderr=True)
    try:
        with err.status(f"loading model {args.model}", spinner="dots"):
            loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    except ModelLoadError as error:
        raise CliError(str(error), EXIT_MISSING_RESOURCE) from error

    chat = args.chat or args.system is not None
    messages = None
    if chat:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}
        ]
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tokens"),
        TimeElapsedColumn(), console=err, transient=args.json,
    ) as bar:
        task = bar.add_task("scoring 2^n masks", total=None)

        def progress(done: int, total: int) -> None:
            # scoring is done when every token is; the certified LP solve follows
            description = "solving the AND-OR LP" if total and done >= total else "scoring 2^n masks"
            bar.update(task, completed=done, total=total, description=description)

        try:
            result = audit_prompt(
                loaded.model, loaded.tokenizer,
                prompt=None if chat else args.prompt, messages=messages, answer=args.answer,
                players=players, n_players=args.n, qthres=args.qthres, mode=args.mode,
                max_answer_tokens=args.max_answer_tokens, single_token=args.single_token,
                baseline=None if args.baseline == "auto" else args.baseline, seed=args.seed, progress=progress,
            )
        except PlayerError as error:
            raise CliError(str(error), EXIT_BAD_INPUT) from error
        except ValueError as error:
            raise CliError(str(error), EXIT_BAD_INPUT) from error

    if args.json:
        payload: dict[str, Any] = {"model": args.model, **result.to_dict(args.top)}
        json.dump(payload, sys.stdout)
        sys.stdout.write("\n")
        return 0
    _print_table(Console(), result, args.top)
    return 0


def player_names(texts: list[str]) -> list[str]:
    """Player texts for display; a word that is several players ("Carla" in the facts and in the
    question) gets its index, so "slapped & Carla#5 & Carla#7" says which mention it is."""
    repeated = {text for text in texts if texts.count(text) > 1}
    return [f"{text}#{i}" if text in repeated else text for i, text in enumerate(texts)]


def _print_table(console: Any, result: Any, top: int) -> None:
    from rich.table import Table

    game, inter = result.game, result.interactions
    answer = repr(game.answer_text)
    if not game.answer_text.strip():  # the model ended at once: its end-of-sequence token is what is scored
        answer += f" (token ids {list(game.answer_ids)}: the model's answer is to stop)"
    console.print(f"[bold]answer[/bold]: {answer}   v(N) = {game.raw_full:.4f}   "
                  f"v(empty) = {game.raw_empty:.4f}   baseline = {game.baseline_kind}")
    names = player_names([p.text for p in game.players])
    console.print("[bold]players[/bold]: " + ", ".join(f"{p.index}:{p.text}" for p in game.players))
    cost = game.cost
    console.print(f"scoring: {cost.tokens_computed} tokens, {cost.forward_passes} forward calls, "
                  f"{cost.seconds:.2f} s on {cost.device} ({cost.strategy}); LP gap {inter.gap:.1e}")
    table = Table(title=f"top {top} interactions")
    table.add_column("#", justify="right")
    table.add_column("kind")
    table.add_column("words")
    table.add_column("order", justify="right")
    table.add_column("value", justify="right")
    table.add_column("share", justify="right")
    norm = inter.normaliser or 1.0
    for rank, term in enumerate(result.top(top), 1):
        words = (" & " if term.kind == "and" else " | ").join(names[i] for i in term.players)
        table.add_row(str(rank), term.kind.upper(), words, str(term.order), f"{term.value:+.4f}", f"{term.value / norm:+.1%}")
    console.print(table)
