"""``interaction-auditor testbed ...``: build and validate the ground-truth model family.

``testbed build [--out DIR] [--only NAME ...] [--world W] [--seed S] [--template-set T] [--workers N] [--json]``
trains the models that are not cached yet and prints each model's measured train/held-out accuracy
and loss, generalization gap and conflict accuracy (with ``--json``: one object with every model's
path, whether it was cached, its timings and metrics).

``testbed validate [--prompts 40] [--world W] [--seed S] [--template-set T] [--json]`` builds what is missing,
audits every model on conflict prompts of its own world (see ``auditor.testbed.acceptance``) and prints per
model the held-out accuracy, generalization gap, mean misattribution (and its cancellation-aware
trial variant), overfitting score, sparsity, cancellation and the share of interaction strength
not shared with the world's clean model (``--reference-prompts``), then the two acceptance
figures (misattribution AUC, overfitting Spearman) with their targets. Exit code 0 when both are met, 4 (``EXIT_NOT_ACCEPTED``) when either is not.

``--world`` picks the testbed world: ``judgment`` (the default: one-paragraph judgments, word players)
or ``dossier`` (case files of 6-10 passages, audited with the passages as labelled segments).

Sub-commands register themselves through ``SUBCOMMANDS``. Building the parsers imports only
``auditor.testbed.names`` and ``corpus`` (no torch): ``--help`` must be instant, so everything heavy is
imported inside the handlers.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditor.cli import EXIT_NOT_ACCEPTED, EXIT_OK, CliError
from auditor.cli.validation_tables import validation_tables

DEFAULT_PROMPTS = 40  # = auditor.testbed.acceptance.DEFAULT_PROMPTS (checked in tests/cli/test_cli.py); light copy for --help
DEFAULT_REFERENCE_PROMPTS = 10  # = acceptance.DEFAULT_REFERENCE_PROMPTS (tests/testbed/test_reference_share.py)


def _add_world_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by the testbed sub-commands: where the models live and which world."""
    from auditor.testbed import dossier_lexicon, names

    parser.add_argument(
        "--out",
        "--root",
        dest="root",
        type=Path,
        default=None,
        help=f"model cache directory (default: ${names.ENV_ROOT} or ~/.cache/interaction-auditor/testbed)",
    )
    parser.add_argument("--seed", type=int, default=0, help="corpus and training seed (default 0)")
    parser.add_argument(
        "--world",
        default=names.JUDGMENT,
        choices=list(names.WORLDS),
        help=f"which testbed world: {names.JUDGMENT} (one-paragraph judgments, word players; the default) or "
        f"{names.DOSSIER} (case files of 6-10 passages, passage players)",
    )
    parser.add_argument(
        "--template-set",
        default="standard",
        choices=sorted({name for world in names.WORLDS for name in dossier_lexicon.template_sets(world)}),
        help="sentence templates of the world's corpus (default: standard)",
    )


def _metrics_table(infos: dict[str, dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="testbed models (accuracy / loss of the answer token)")
    for column in ("model", "train acc", "held-out acc", "gap acc", "train loss", "held-out loss",
                   "gap loss", "conflict acc", "cue rate", "train s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for name, info in infos.items():
        m = info["metrics"]
        table.add_row(
            name,
            f"{m['train']['accuracy']:.3f}",
            f"{m['heldout']['accuracy']:.3f}",
            f"{m['gap']['accuracy']:+.3f}",
            f"{m['train']['loss']:.3f}",
            f"{m['heldout']['loss']:.3f}",
            f"{m['gap']['loss']:+.3f}",
            f"{m['conflict']['accuracy']:.3f}",
            f"{m['conflict']['cue_rate']:.3f}",
            f"{info['seconds']['total']:.0f}",
        )
    return table


def _check_workers(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise CliError(f"--workers must be at least 1, got {args.workers}")


def _build(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from auditor.testbed import models
    from auditor.testbed.specs import is_built, model_dir

    _check_workers(args)
    console = Console(stderr=True)
    names = args.only or list(models.MODEL_NAMES)
    try:
        specs = models.model_specs(args.seed, args.template_set, args.world)
    except ValueError as error:
        raise CliError(str(error)) from error
    # what the cache already holds, before build_all fills it (build_all skips exactly these)
    cached = {name: is_built(model_dir(specs[name], args.root)) for name in names}
    started = time.perf_counter()
    with _BuildBars(console, transient=args.json) as bars:
        try:
            paths = models.build_all(
                names,
                args.root,
                seed=args.seed,
                template_set=args.template_set,
                world=args.world,
                workers=args.workers,
                progress=bars.report,
            )
        except ValueError as error:
            raise CliError(str(error)) from error
    elapsed = time.perf_counter() - started
    infos = {name: models.read_info(path) for name, path in paths.items()}
    if args.json:
        print(json.dumps(_build_summary(args, paths, infos, cached, elapsed), indent=2))
        return EXIT_OK
    Console().print(_metrics_table(infos))
    for name, path in paths.items():
        print(f"{name}\t{path}")
    console.print(f"done in {elapsed:.1f}s", highlight=False)
    return EXIT_OK


class _BuildBars:
    """One progress bar per model in training, fed by the builders' messages (also from worker
    processes): "NAME: step i/N ..." moves NAME's bar; any other message is printed above the bars."""

    STEP = re.compile(r"^(?P<name>[\w.-]+): step (?P<done>\d+)/(?P<total>\d+)")

    def __init__(self, console: Any, transient: bool = False) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bars = Progress(TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("steps"), TimeElapsedColumn(), console=console, transient=transient)
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> _BuildBars:
        self.bars.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.__exit__(*exc)

    def report(self, message: str) -> None:
        step = self.STEP.match(message)
        if step is None:
            self.bars.console.print(message, highlight=False)
            return
        name = step["name"]
        if name not in self.tasks:
            self.tasks[name] = self.bars.add_task(name, total=int(step["total"]))
        # the total can change: a model that has not learned is retrained with more steps
        self.bars.update(self.tasks[name], completed=int(step["done"]), total=int(step["total"]))


def _build_summary(
    args: argparse.Namespace,
    paths: dict[str, Path],
    infos: dict[str, dict[str, Any]],
    cached: dict[str, bool],
    elapsed: float,
) -> dict[str, Any]:
    """The ``--json`` result of ``testbed build``: one entry per model, in the order asked for.

    ``seconds`` are the model's own build timings from its ``testbed.json`` (for a cached model, those
    of the build that made it); ``metrics`` are the measured train/held-out/gap/conflict figures.
    """
    from auditor.testbed.specs import default_root

    return {
        "root": str(args.root if args.root is not None else default_root()),
        "seed": args.seed,
        "template_set": args.template_set,
        "world": args.world,
        "seconds": elapsed,
        "models": [
            {
                "name": name,
                "path": str(path),
                "cached": cached[name],
                "hash": infos[name].get("hash"),
                "weights_sha256": _weights_sha256(path),
                "seconds": infos[name].get("seconds"),
                "metrics": infos[name].get("metrics"),
            }
            for name, path in paths.items()
        ],
    }


def _weights_sha256(path: Path) -> str | None:
    """The build's fingerprint: sha256 of its weights file. Two builds of one spec agree bit for bit
    only on the same CPU kernels (docs/testbed.md, "Builds across machines"), so this is what to
    compare when a testbed figure differs between machines."""
    weights = Path(path) / "model.safetensors"
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with open(weights, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _register_build(subparsers: Any) -> None:
    from auditor.testbed import names

    parser = subparsers.add_parser(
        "build",
        help="train the testbed models that are not cached yet",
        description="Train (or find in the cache) the clean, shortcut and overfit testbed models.",
        epilog="exit codes: 0 built (or found cached); 1 internal error; 2 bad input (options out of range).",
    )
    _add_world_options(parser)
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="NAME",
        choices=list(names.MODEL_NAMES),
        help=f"build only these models ({', '.join(names.MODEL_NAMES)})",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="models trained in parallel, one CPU thread each (default 2)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (per model: path, cached, timings, metrics) instead of the table",
    )
    parser.set_defaults(handler=_build)


def _validate(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from auditor.testbed import acceptance
    from auditor.testbed import models
    from auditor.testbed.names import JUDGMENT

    if args.prompts < 2:
        raise CliError("--prompts must be at least 2 (an AUC needs prompts on both sides)")
    if not 0.0 <= args.qthres < 1.0:
        raise CliError(f"--qthres must be in [0, 1), got {args.qthres}")
    resamples = acceptance.DEFAULT_RESAMPLES if args.resamples is None else args.resamples
    if resamples < 0:
        raise CliError(f"--resamples must be >= 0, got {resamples}")
    if args.subsample is not None and not 2 <= args.subsample <= args.prompts:
        raise CliError(f"--subsample must be between 2 and --prompts ({args.prompts}), got {args.subsample}")
    if args.reference_prompts < 0:
        raise CliError(f"--reference-prompts must be >= 0, got {args.reference_prompts}")
    if args.subsample is not None and resamples == 0:
        raise CliError("--subsample needs --resamples > 0 (the subsets are drawn that many times)")
    _check_workers(args)
    console = Console(stderr=True)
    started = time.perf_counter()
    try:
        models.build_all(
            None,
            args.root,
            seed=args.seed,
            template_set=args.template_set,
            world=args.world,
            workers=args.workers,
            progress=lambda message: console.print(message, highlight=False),
        )
    except ValueError as error:
        raise CliError(str(error)) from error
    names = list(models.MODEL_NAMES)
    with Progress(
        TextColumn("auditing {task.fields[model]:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("prompts"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("audit", total=len(names) * args.prompts, model=names[0])

        def on_prompt(name: str, index: int) -> None:
            progress.update(task, advance=1, model=name)

        report = acceptance.validate(
            args.prompts,
            root=args.root,
            seed=args.seed,
            template_set=args.template_set,
            world=args.world,
            # The experimental fragility figure scores every game twice; on case files (2^10 masks of
            # ~300 tokens) that doubles the validation, so the dossier world reports it as n/a.
            fragility=args.world == JUDGMENT,
            # ... and its seven models are audited side by side (--workers); the judgment world's
            # figures were recorded serially and stay so.
            workers=1 if args.world == JUDGMENT else args.workers,
            qthres=args.qthres,
            baseline=None if args.baseline == "auto" else args.baseline,
            resamples=resamples,
            subsample=args.subsample,
            reference_prompts=args.reference_prompts,
            on_prompt=on_prompt,
        )
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({**report.to_dict(), "seconds": elapsed}, indent=2))
    else:
        out = Console()
        for table in validation_tables(report):
            out.print(table)
        out.print(
            f"{args.world} world, seed {args.seed}, template set {args.template_set!r}, {args.prompts} conflict prompts per model, "
            f"{elapsed:.0f}s: " + ("[green]accepted[/green]" if report.accepted else "[red]not accepted[/red]"),
            highlight=False,
        )
    return EXIT_OK if report.accepted else EXIT_NOT_ACCEPTED


def _register_validate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="audit the testbed models and check the metrics against their ground truth",
        description="Audit every testbed model (built if missing) on conflict prompts of its world and check "
        "that misattribution separates the shortcut model from the clean one (per-prompt AUC) and that the "
        "overfitting score ranks the overfit family by its measured generalization gap (Spearman).",
        epilog=f"exit codes: 0 accepted; 1 internal error; 2 bad input; {EXIT_NOT_ACCEPTED} a metric missed its "
        "acceptance target (the tables say which).",
    )
    _add_world_options(parser)
    parser.add_argument("--prompts", type=int, default=DEFAULT_PROMPTS,
                        help=f"conflict prompts audited per model (default {DEFAULT_PROMPTS}, the acceptance's)")
    parser.add_argument("--qthres", type=float, default=0.04, help="bound on the q correction (default 0.04)")
    parser.add_argument("--baseline", default="auto", choices=["auto", "pad", "unk", "mean"],
                        help="masking baseline embedding, as in production (auto: pad, else unk, else mean)")
    parser.add_argument("--resamples", type=int, default=None,
                        help="bootstrap resamples of the prompts, to say how often each verdict holds "
                        "(default 500; 0: skip)")
    parser.add_argument("--subsample", type=int, default=None, metavar="K",
                        help="also say how often K fresh prompts would meet each ranking target, from random "
                        "K-subsets of the audited prompts (audit many, e.g. --prompts 100 --subsample 20)")
    parser.add_argument("--reference-prompts", type=int, default=DEFAULT_REFERENCE_PROMPTS, metavar="K",
                        help="measure each model's share of interaction strength not shared with the clean model "
                        f"(one joint LP per prompt, seconds each) on the first K audited prompts (default "
                        f"{DEFAULT_REFERENCE_PROMPTS}; 0: skip)")
    parser.add_argument("--workers", type=int, default=2,
                        help="models trained in parallel if missing, and with --world dossier also audited in "
                        "parallel (default 2)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    parser.set_defaults(handler=_validate)


SUBCOMMANDS: list[Callable[[Any], None]] = [_register_build, _register_validate]
"""Registration functions of the ``testbed`` sub-commands."""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "testbed",
        help="build and validate the ground-truth testbed models",
        description="Synthetic legal models with planted, measured flaws, in two worlds: one-paragraph "
        "judgments (--world judgment, the default) and case files of passages (--world dossier).",
    )
    testbed_subparsers = parser.add_subparsers(dest="testbed_command", metavar="SUBCOMMAND", required=True)
    for register_subcommand in SUBCOMMANDS:
        register_subcommand(testbed_subparsers)
