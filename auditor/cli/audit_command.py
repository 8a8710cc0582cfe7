"""``interaction-auditor audit``: audit one prompt of a causal LM and print its top interactions.

Example::

    interaction-auditor audit --model ./my-model --prompt "Alice stole a bicycle. The charge is" \\
        --players 'Alice|stole|bicycle' --n 10 --json

RAG traffic, passages as players (coarse), the most salient refined into words (fine)::

    interaction-auditor audit --model ./my-model --prompt "$(cat prompt.txt)" \
        --players segments --segments passages.json

``passages.json``: ``[{"id": "doc-3", "text": "...", "label": "irrelevant"}, ...]`` (or
``{"id", "start", "end", "label"}`` by character range).

Loading the model shows a spinner and a progress bar on stderr that names its phase (scoring masks,
solving, refining), so ``--json`` output on stdout stays machine-readable. Options and segments are
checked before the model is loaded, so a typo costs no model load.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from auditor.cli import EXIT_BAD_INPUT, EXIT_MISSING_RESOURCE, CliError

MAX_PLAYERS = 16  # = auditor.game.players.DEFAULT_MAX_PLAYERS (checked in tests/cli/test_cli.py)
GRANULARITIES = ("words", "sentences", "messages", "segments", "auto")  # = auditor.game.granularity's
DEFAULT_MAX_SCORED_TOKENS = 2**26  # = AuditorSettings.max_scored_tokens

EPILOG = """\
model: a local Hugging Face directory (with a fast tokenizer), a hub id (HF_HUB_OFFLINE=1 to use
  only the local cache), or testbed:NAME (clean, shortcut, overfit-1 .. overfit-5; built on first use).
exit codes: 0 ok; 1 internal error; 2 bad input (options out of range, spans or segments not in the
  prompt, a bad segments file, an empty prompt or answer, a prompt too long for the model, a game over
  --max-scored-tokens or --memory-budget-mb); 3 the model cannot be loaded (missing
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
    parser.add_argument("--prompt", default=None, help="the prompt (with --chat: the user message)")
    parser.add_argument("--messages", default=None, metavar="FILE.json",
                        help="chat messages [{role, content}, ...] instead of --prompt (for --players messages)")
    parser.add_argument("--chat", action="store_true", help="render --prompt as a user message with the chat template")
    parser.add_argument("--system", default=None, help="system message (implies --chat)")
    parser.add_argument("--answer", default=None, help="answer text to score (default: the model's greedy answer)")
    parser.add_argument(
        "--players", default="auto",
        help="granularity: words (largest single-word effects), sentences, messages (chat turns), segments "
        "(--segments), auto (passages or messages for long prompts, words for short ones); or random, or "
        "spans separated by '|', e.g. 'Alice|stole'",
    )
    parser.add_argument("--segments", default=None, metavar="FILE.json",
                        help='coarse players: [{"id": "doc-3", "text": "...", "label": "irrelevant"}, ...]')
    parser.add_argument("--system-players", default="one", choices=["one", "sentences"],
                        help="with --players messages: the system prompt as one player or one per sentence")
    parser.add_argument("--refine", type=int, default=2, choices=[0, 1, 2],
                        help="coarse players refined into words in a second game (default 2)")
    parser.add_argument("--max-scored-tokens", type=int, default=DEFAULT_MAX_SCORED_TOKENS,
                        help="token positions the audit may push through the model, both games (default 2^26)")
    parser.add_argument("--memory-budget-mb", type=int, default=None,
                        help="peak memory of one forward call (MiB); rows per call are sized by tokens to fit")
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
    if value in GRANULARITIES or value == "random":
        return value
    spans = [s for s in value.split("|") if s.strip()]
    if not spans:
        raise CliError(f"--players needs one of {', '.join(GRANULARITIES)}, 'random' or spans separated by '|'",
                       EXIT_BAD_INPUT)
    return spans


def _read_json(path: str, option: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as error:
        raise CliError(f"{option}: cannot read {path}: {error.strerror or error}", EXIT_BAD_INPUT) from error
    except json.JSONDecodeError as error:
        raise CliError(f"{option}: {path} is not JSON: {error}", EXIT_BAD_INPUT) from error


def _segments_arg(args: argparse.Namespace, players: str | list[str]) -> list[dict[str, Any]] | None:
    """The --segments file, checked field by field (ids, labels, empty passages) before the model loads."""
    if args.segments is None:
        if players == "segments":
            raise CliError("--players segments needs --segments FILE.json", EXIT_BAD_INPUT)
        return None
    if players not in ("segments", "auto"):
        raise CliError(f"--segments needs --players segments or auto, not {args.players!r}", EXIT_BAD_INPUT)
    from auditor.game.granularity import MAX_COARSE_PLAYERS, SegmentSpec
    from auditor.game.players import PlayerError

    data = _read_json(args.segments, "--segments")
    if isinstance(data, dict) and "segments" in data:
        data = data["segments"]
    if not isinstance(data, list) or not all(isinstance(x, dict) for x in data):
        raise CliError("--segments: the file must hold a JSON list of objects with id, text (or start, end) and label",
                       EXIT_BAD_INPUT)
    if len(data) > MAX_COARSE_PLAYERS:
        raise CliError(f"--segments: {len(data)} segments exceed the limit of {MAX_COARSE_PLAYERS} coarse players",
                       EXIT_BAD_INPUT)
    try:
        for item in data:
            SegmentSpec.coerce(item)
    except (PlayerError, TypeError) as error:
        raise CliError(f"--segments: {error}", EXIT_BAD_INPUT) from error
    ids = [item["id"] for item in data]
    if len(set(ids)) != len(ids):
        raise CliError(f"--segments: duplicate id {next(i for i in ids if ids.count(i) > 1)!r}", EXIT_BAD_INPUT)
    return data


def _messages_arg(args: argparse.Namespace) -> list[dict[str, str]] | None:
    if args.messages is None:
        return None
    if args.prompt is not None or args.chat or args.system is not None:
        raise CliError("--messages replaces --prompt, --chat and --system: give one or the other", EXIT_BAD_INPUT)
    data = _read_json(args.messages, "--messages")
    if (not isinstance(data, list) or not data
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                       for m in data)):
        raise CliError("--messages: the file must hold a non-empty JSON list of {role, content} objects",
                       EXIT_BAD_INPUT)
    return [{"role": m["role"], "content": m["content"]} for m in data]


def _check_options(args: argparse.Namespace) -> str | list[str]:
    """Reject out-of-range options before the (slow) model load; returns the players argument."""
    players = _players_arg(args.players)
    if args.prompt is None and args.messages is None:
        raise CliError("give --prompt or --messages", EXIT_BAD_INPUT)
    if args.prompt is not None and not args.prompt.strip():
        raise CliError("--prompt is empty", EXIT_BAD_INPUT)
    if args.max_scored_tokens < 1:
        raise CliError(f"--max-scored-tokens must be at least 1, got {args.max_scored_tokens}", EXIT_BAD_INPUT)
    if args.memory_budget_mb is not None and args.memory_budget_mb < 1:
        raise CliError(f"--memory-budget-mb must be at least 1, got {args.memory_budget_mb}", EXIT_BAD_INPUT)
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
    from auditor.game.planning import OverBudgetError
    from auditor.game.players import PlayerError

    players = _check_options(args)
    segments = _segments_arg(args, players)
    messages = _messages_arg(args)
    err = Console(stderr=True)
    try:
        with err.status(f"loading model {args.model}", spinner="dots"):
            loaded = load_model(args.model, device=args.device, dtype=args.dtype)
    except ModelLoadError as error:
        raise CliError(str(error), EXIT_MISSING_RESOURCE) from error

    chat = args.chat or args.system is not None or messages is not None
    if chat and messages is None:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + [
            {"role": "user", "content": args.prompt}
        ]
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tokens"),
        TimeElapsedColumn(), console=err, transient=args.json,
    ) as bar:
        task = bar.add_task("scoring masks", total=None)
        phase_now = ["scoring masks"]

        def on_phase(name: str) -> None:
            # the bar counts tokens while masks are scored; the LP solve has no count
            phase_now[0] = name
            if name == "solving":
                bar.update(task, description="solving the AND-OR LP")
            else:
                bar.update(task, description=f"{name} (tokens)", total=None, completed=0)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"{phase_now[0]} (tokens)")

        try:
            result = audit_prompt(
                loaded.model, loaded.tokenizer,
                prompt=None if chat else args.prompt, messages=messages, answer=args.answer,
                players=players, n_players=args.n, qthres=args.qthres, mode=args.mode,
                max_answer_tokens=args.max_answer_tokens, single_token=args.single_token,
                baseline=None if args.baseline == "auto" else args.baseline, seed=args.seed, progress=progress,
                segments=segments, system=args.system_players, refine=args.refine,
                max_scored_tokens=args.max_scored_tokens, on_phase=on_phase,
                memory_budget=None if args.memory_budget_mb is None else args.memory_budget_mb * 2**20,
                strict_memory=args.memory_budget_mb is not None,
            )
        except OverBudgetError as error:
            raise CliError(f"{error} (here: --max-scored-tokens / --memory-budget-mb)", EXIT_BAD_INPUT) from error
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

    game = result.game
    answer = repr(game.answer_text)
    if not game.answer_text.strip():  # the model ended at once: its end-of-sequence token is what is scored
        answer += f" (token ids {list(game.answer_ids)}: the model's answer is to stop)"
    console.print(f"[bold]answer[/bold]: {answer}   v(N) = {game.raw_full:.4f}   "
                  f"v(empty) = {game.raw_empty:.4f}   baseline = {game.baseline_kind}")
    _print_level(console, result, top, Table, "")
    if result.fine is not None:
        refined = ", ".join(player_display(result.game.players[i]) for i in result.refined)
        console.print(f"\n[bold]refined into words[/bold]: {refined} (the other {result.granularity} held present)")
        _print_level(console, result.fine, top, Table, "refined: ")
    elif result.refine_note:
        console.print(f"\nno refinement: {result.refine_note}")


def player_display(player: Any) -> str:
    """A coarse player by its id (``doc-3``), a word by its text; long texts are cut for the table."""
    text = player.text if len(player.text) <= 40 else player.text[:37] + "..."
    return f"{player.segment_id} {text!r}" if player.segment_id else text


def strength_shares(values: list[float], total: float) -> list[float]:
    """Each term's share of the total interaction strength sum |I(S)| over all terms: bounded by
    100% in absolute value, unlike a share of v(N) - v(empty), which explodes when the two are close."""
    return [v / total if total > 0 else 0.0 for v in values]


def _print_level(console: Any, result: Any, top: int, table_cls: Any, prefix: str) -> None:
    game, inter = result.game, result.interactions
    coarse = result.granularity not in ("words", "random", "spans")
    labels = [player_display(p) if coarse else p.text for p in game.players]
    names = player_names([p.segment_id if coarse and p.segment_id else p.text for p in game.players])
    from rich.markup import escape

    console.print(f"[bold]{prefix}players[/bold] ({result.granularity}): " + escape(
        ", ".join(f"{p.index}:{label}" + (f" [{p.label}]" if p.label != "unlabelled" else "")
                  for p, label in zip(game.players, labels))))
    cost = game.cost
    console.print(f"scoring: {cost.tokens_computed} tokens, {cost.forward_passes} forward calls, "
                  f"{cost.seconds:.2f} s on {cost.device} ({cost.strategy}); LP gap {inter.gap:.1e}")
    table = table_cls(title=f"{prefix}top {top} interactions")
    table.add_column("#", justify="right")
    table.add_column("kind")
    table.add_column("players" if coarse else "words")
    table.add_column("order", justify="right")
    table.add_column("value", justify="right")
    table.add_column("share", justify="right")
    total = float(abs(inter.and_terms).sum() + abs(inter.or_terms).sum())
    terms = result.top(top)
    for rank, (term, share) in enumerate(zip(terms, strength_shares([t.value for t in terms], total)), 1):
        words = (" & " if term.kind == "and" else " | ").join(names[i] for i in term.players)
        table.add_row(str(rank), term.kind.upper(), words, str(term.order), f"{term.value:+.4f}", f"{share:+.1%}")
    console.print(table)
    console.print("share: of the total interaction strength sum |I| (all AND and OR terms)")
