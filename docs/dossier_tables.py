"""Every table of docs/testbed.md's "Dossier world" section, rendered from kept validation runs.

A dossier validation builds seven models and audits them on 40 case files (about five minutes a
seed on two cores), so the docs keep the runs' figures in ``docs/dossier-measured.json`` and this
script renders the tables from them; ``tests/test_docs_dossier.py`` checks that the page shows
exactly that rendering. Nothing in those tables is typed by hand.

    python docs/dossier_tables.py --collect DESIGN SEED VALIDATE.json [BUILD.json] ...
        # add one run (``testbed validate --world dossier --json`` output, and the build's JSON for
        # the shortcut's cue rate and the build time) to docs/dossier-measured.json
    python docs/dossier_tables.py            # print the tables
    python docs/dossier_tables.py --write    # replace each marked table in docs/testbed.md

The verdict and the per-prompt trial are recomputed here with the library's own rule
(``ValidationReport`` with the dossier world's stability target, ``per_request_stability``) from the
run's per-prompt numbers, so a run of code that predates them is read by today's rule.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MEASURED = REPO / "docs" / "dossier-measured.json"
PAGE = REPO / "docs" / "testbed.md"
FAMILY = ("overfit-1", "overfit-2", "overfit-3", "overfit-4", "overfit-5")
FINAL, BEFORE = "act-absent", "absent"  # the recipes' suffixes: dossier-2026-12-06.<design>


def summarise(validation: dict[str, Any], build: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the tables need from one run, with the verdict and the trial recomputed."""
    import numpy as np
    from scipy.stats import spearmanr

    from auditor.testbed import acceptance

    per_prompt = validation["per_prompt"]
    family = []
    for name in FAMILY:
        row = next(r for r in validation["models"] if r["model"] == name)
        report = acceptance.ModelReport(name=name, heldout_accuracy=row["heldout_accuracy"],
                                        train_accuracy=row["train_accuracy"],
                                        generalization_gap=row["generalization_gap"])
        report.overfitting = per_prompt[name]["overfitting"]
        family.append(report)
    gaps = [m.generalization_gap for m in family]
    per_request = float(spearmanr([np.mean(m.overfitting) for m in family], gaps).statistic)
    figures = {key: validation[key] for key in (
        "misattribution_auc", "misattribution_stability", "overfitting_spearman", "overfitting_stability",
        "loss_spearman", "loss_stability", "resamples")}
    verdict = acceptance.ValidationReport(models=[], stability_target=acceptance.STABILITY_TARGET, **figures)
    shortcut = next((m for m in (build or {}).get("models", []) if m["name"] == "shortcut"), None)
    return {
        **figures,
        "per_request_spearman": per_request,
        "per_request_stability": acceptance.per_request_stability(family, validation["resamples"]),
        "accepted": verdict.accepted,
        "misattribution_ok": verdict.misattribution_ok,
        "overfitting_ranking_ok": verdict.overfitting_ranking_ok,
        "as_reliable_as_reference": verdict.as_reliable_as_reference,
        "models": [{key: row[key] for key in ("model", "heldout_accuracy", "generalization_gap", "misattribution",
                                              "overfitting", "sparsity", "cancellation")}
                   for row in validation["models"]],
        "clean_files_above_half": sum(v > 0.5 for v in per_prompt["clean"]["misattribution"]),
        "cue_rate": shortcut["metrics"]["conflict"]["cue_rate"] if shortcut else None,
        "build_seconds": build.get("seconds") if build else None,
    }


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _figure(value: float, share: float | None) -> str:
    return f"{value:.3f} ({_share(share)})"


def _verdict(run: dict[str, Any]) -> str:
    if run["accepted"]:
        return "**accepted**" + ("" if run["overfitting_ranking_ok"] else " (the ranking by the reference rule)")
    missed = [name for name, ok in (("misattribution", run["misattribution_ok"]),
                                    ("overfitting", run["overfitting_ranking_ok"] or run["as_reliable_as_reference"]))
              if not ok]
    return "not accepted: " + ", ".join(missed)


def acceptance_table(runs: dict[str, dict[str, Any]]) -> str:
    lines = ["| seed | misattribution AUC | overfitting Spearman (window) | reference: gold-answer loss "
             "| trial: mean of per-file scores | shortcut cue rate | verdict |",
             "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for seed, run in sorted(runs.items(), key=lambda item: int(item[0])):
        cue = "n/a" if run["cue_rate"] is None else f"{run['cue_rate']:.2f}"
        lines.append(f"| {seed} | {_figure(run['misattribution_auc'], run['misattribution_stability'])} "
                     f"| {_figure(run['overfitting_spearman'], run['overfitting_stability'])} "
                     f"| {_figure(run['loss_spearman'], run['loss_stability'])} "
                     f"| {_figure(run['per_request_spearman'], run['per_request_stability'])} | {cue} | {_verdict(run)} |")
    return "\n".join(lines) + "\n"


def models_table(run: dict[str, Any]) -> str:
    lines = ["| model | held-out acc | gen. gap (nats) | misattribution | overfitting (window) | sparsity | cancellation |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in run["models"]:
        lines.append(f"| {row['model']} | {row['heldout_accuracy']:.3f} | {row['generalization_gap']:+.3f} "
                     f"| {row['misattribution']:.3f} | {row['overfitting']:.3f} | {row['sparsity']:.1f} "
                     f"| {row['cancellation']:.3f} |")
    return "\n".join(lines) + "\n"


def family_table(runs: dict[str, dict[str, Any]]) -> str:
    lines = ["| seed | " + " | ".join(FAMILY) + " |", "| --- |" + " ---: |" * len(FAMILY)]
    for seed, run in sorted(runs.items(), key=lambda item: int(item[0])):
        rows = {row["model"]: row for row in run["models"]}
        cells = [f"{rows[name]['overfitting']:.3f} ({rows[name]['generalization_gap']:.3f})" for name in FAMILY]
        lines.append(f"| {seed} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tables(data: dict[str, Any]) -> dict[str, str]:
    """Each marked table of the page, by marker name."""
    final, before = data[FINAL], data.get(BEFORE, {})
    out = {"dossier-acceptance": acceptance_table(final), "dossier-seed0": models_table(final["0"]),
           "dossier-family": family_table(final)}
    if before:
        out["dossier-before"] = acceptance_table(before)
        out["dossier-before-seed0"] = models_table(before["0"])
    return out


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name} -->\n", f"<!-- /{name} -->\n"


def shown(page: str, name: str) -> str:
    begin, end = _markers(name)
    return page[page.index(begin) + len(begin):page.index(end)]


def write(rendered: dict[str, str], path: Path = PAGE) -> None:
    page = path.read_text()
    for name, text in rendered.items():
        begin, end = _markers(name)
        if begin not in page or end not in page:
            raise ValueError(f"{path} has no {begin.strip()} ... {end.strip()} markers")
        page = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: begin + text + end, page, flags=re.S)
    path.write_text(page)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--collect", nargs="+", metavar="ARG",
                        help="DESIGN SEED VALIDATE.json [BUILD.json]: add one run to the kept measurement")
    parser.add_argument("--write", action="store_true", help="replace the marked tables in docs/testbed.md")
    args = parser.parse_args(argv)
    data = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    if args.collect:
        if len(args.collect) not in (3, 4) or args.collect[0] not in (FINAL, BEFORE):
            parser.error(f"--collect takes DESIGN ({FINAL} or {BEFORE}) SEED VALIDATE.json [BUILD.json]")
        design, seed, validation = args.collect[:3]
        build = json.loads(Path(args.collect[3]).read_text()) if len(args.collect) == 4 else None
        data.setdefault(design, {})[str(int(seed))] = summarise(json.loads(Path(validation).read_text()), build)
        MEASURED.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return 0
    rendered = tables(data)
    if args.write:
        write(rendered)
    else:
        for name, text in rendered.items():
            sys.stdout.write(f"{name}:\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
