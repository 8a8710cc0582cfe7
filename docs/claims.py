"""Every number in docs/claims.md: the field's quantitative claims, measured on the testbed.

``python docs/claims.py`` audits the testbed (built on first use, cached) and prints the claims
table as Markdown; ``--json`` prints the measurements behind it; ``--write`` replaces the table
between the ``<!-- claims-table -->`` markers of docs/claims.md; ``--from-json FILE`` renders a
saved ``--json`` run instead of measuring. Four claims (docs/claims.md says where each comes from):

(a) salient AND-OR terms per answer: sparsity of the clean, shortcut and most overfit models of
    the default world (seed 0, standard templates) on its first ``--prompts`` conflict prompts,
    audited exactly as ``testbed validate`` audits them (own answer, labelled word players);
(b) share of misattributed interaction strength on a shortcut model: the shortcut model's mean
    misattribution on the same prompts (the clean model's beside it), and the cancellation-aware
    trial variant (``auditor.metrics.net_misattribution``);
(c) share of strength cancelled by positive-negative pairs: the cancellation ratio
    2 min(P, Q) / (P + Q) over the salient terms (the product's figure) and over every non-zero term;
(d) overlap of salient interactions between independently trained models: ``compare`` (same
    prompts, players, answer and baseline) of the clean model of seed 0 against the clean models of
    seed 2 (same templates, another corpus and initialisation), and of seed 1 against seed 3
    (alternate templates), and against a clean model one layer deeper (3 layers, built by this
    script from the seed-0 clean spec into its own directory, ``testbed-sizes`` beside the testbed
    cache), on the first
    ``--compare-prompts`` conflict prompts of the first model's world, scored on its answer.

Runs in minutes on two CPU cores once the four worlds' clean models are cached.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CLAIMS_MD = REPO / "docs" / "claims.md"
BEGIN, END = "<!-- claims-table -->\n", "<!-- /claims-table -->\n"
SIZE_ARCH = {"layers": 3}  # one layer deeper than the testbed's models (ArchSpec default 2)
SEED_PAIRS = ((0, 2, "standard"), (1, 3, "alternate"))


def _sizes_root() -> Path:
    from auditor.testbed.specs import default_root

    return default_root().parent / "testbed-sizes"


def measure_single(prompts: int, root: Any = None) -> dict[str, Any]:
    """Claims (a)-(c): audit three models of the default world as ``validate`` does."""
    from auditor.testbed.acceptance import audit_model
    from auditor.testbed.names import CLEAN, MOST_OVERFIT, SHORTCUT

    out: dict[str, Any] = {"seed": 0, "template_set": "standard", "prompts": prompts, "models": {}}
    for name in (CLEAN, SHORTCUT, MOST_OVERFIT):
        report = audit_model(name, prompts, root=root, seed=0, template_set="standard", fragility=False)
        all_terms = [_all_term_cancellation(game.interactions) for game in report.games]
        out["models"][name] = {
            "players": [game.interactions.n for game in report.games],
            "salient_mean": float(np.mean(report.sparsity)),
            "salient_min": int(min(report.sparsity)),
            "salient_max": int(max(report.sparsity)),
            "misattribution": float(np.mean(report.misattribution)) if report.misattribution else None,
            "misattribution_net": float(np.mean(report.misattribution_net)) if report.misattribution_net else None,
            "cancellation_salient": float(np.mean(report.cancellation)),
            "cancellation_all_terms": float(np.mean(all_terms)),
        }
    return out


def _all_term_cancellation(interactions: Any) -> float:
    """2 min(P, Q) / (P + Q) over every non-zero AND and OR term (not only the salient ones)."""
    values = np.concatenate([interactions.and_terms[1:], interactions.or_terms[1:]])
    positive, negative = float(values[values > 0].sum()), float(-values[values < 0].sum())
    return 2 * min(positive, negative) / (positive + negative) if positive + negative > 0 else 0.0


def size_variant(root: Path | None = None) -> Path:
    """The seed-0 clean model with 3 layers, built (deterministically, cached) into its own root."""
    from auditor.testbed import models
    from auditor.testbed.names import CLEAN
    from auditor.testbed.specs import model_specs

    spec = model_specs(0, "standard")[CLEAN]
    spec = dataclasses.replace(spec, name=f"{CLEAN}-l{SIZE_ARCH['layers']}",
                               arch=dataclasses.replace(spec.arch, **SIZE_ARCH),
                               description=spec.description + f" ({SIZE_ARCH['layers']} layers)")
    return models.build(spec, root or _sizes_root(), progress=lambda message: print(message, file=sys.stderr))


def measure_overlap(compare_prompts: int, root: Any = None, sizes_root: Path | None = None) -> list[dict[str, Any]]:
    """Claim (d): ``compare`` of independently trained clean models on one world's prompts."""
    from auditor.metrics.compare import ModelUnderTest, PromptItem, compare_models
    from auditor.testbed import models
    from auditor.testbed.names import CLEAN

    def side(label: str, loaded: tuple[Any, Any, dict[str, Any]]) -> ModelUnderTest:
        model, tokenizer, info = loaded
        return ModelUnderTest(name=label, model=model, tokenizer=tokenizer, model_id=label, path=info["path"])

    wide = size_variant(sizes_root)
    pairs = [(f"clean seed {a}", models.load(CLEAN, root, seed=a, template_set=t),
              f"clean seed {b}", models.load(CLEAN, root, seed=b, template_set=t)) for a, b, t in SEED_PAIRS]
    pairs.append(("clean seed 0", models.load(CLEAN, root, seed=0, template_set="standard"),
                  f"clean seed 0, {SIZE_ARCH['layers']} layers", models.load(wide)))
    out = []
    for name_a, loaded_a, name_b, loaded_b in pairs:
        prompts = models.audit_prompts_for(loaded_a[2], compare_prompts, conflict=True)
        items = [PromptItem(prompt=p.prompt, spans=tuple(p.player_specs()), line=i + 1) for i, p in enumerate(prompts)]
        report = compare_models(side(name_a, loaded_a), side(name_b, loaded_b), items, answer="a",
                                max_answer_tokens=1, n_players=10)
        agg = report.aggregate
        out.append({
            "a": name_a, "b": name_b, "prompts": agg.prompts,
            "overlap_a_in_b": agg.overlap_a_in_b, "overlap_b_in_a": agg.overlap_b_in_a,
            "chance_a_in_b": agg.chance_a_in_b, "chance_b_in_a": agg.chance_b_in_a,
            "iou": agg.iou,
            "shared_strength_a": None if report.model_a.mean_unshared_share is None
            else 1.0 - report.model_a.mean_unshared_share,
            "shared_strength_b": None if report.model_b.mean_unshared_share is None
            else 1.0 - report.model_b.mean_unshared_share,
            "salient_a": report.model_a.mean_salient, "salient_b": report.model_b.mean_salient,
        })
    return out


def table(data: dict[str, Any]) -> str:
    """The claims table (Markdown), every number from ``data``."""
    single, pairs = data["single"], data["overlap"]
    m = single["models"]
    clean, shortcut, overfit = m["clean"], m["shortcut"], m["overfit-5"]
    n = max(max(model["players"]) for model in m.values())
    prompts = single["prompts"]
    single_cmd = f"`python docs/claims.py --prompts {prompts}`"
    pct = lambda value: "n/a" if value is None else f"{value:.0%}"  # noqa: E731
    rows = [
        "| claim | source | testbed measurement | command |",
        "| --- | --- | --- | --- |",
        f"| (a) 50-150 salient AND-OR terms fit an answer (\"tens to about 150 of 2^(n+1)\") | Ren et al. ICLR 2024; "
        f"Li & Zhang 2023; Shen et al. 2023 (science.md s3) | mean {clean['salient_mean']:.1f} salient terms "
        f"(range {clean['salient_min']}-{clean['salient_max']}) for the clean model, {shortcut['salient_mean']:.1f} "
        f"shortcut, {overfit['salient_mean']:.1f} overfit-5, of 2^{n + 1} = {2 ** (n + 1)} slots at n = {n} "
        f"({prompts} conflict prompts, seed 0) | {single_cmd} |",
        f"| (b) over two-thirds of the interaction strength of a legal model rests on unreliable words | "
        f"Chen et al. 2024, legal LLMs (science.md references) | shortcut model: {pct(shortcut['misattribution'])} "
        f"of salient strength on irrelevant/forbidden words (clean model {pct(clean['misattribution'])}); netted "
        f"over sign (trial): {pct(shortcut['misattribution_net'])} (clean {pct(clean['misattribution_net'])}) "
        f"| {single_cmd} |",
        f"| (c) over 90% of interaction strength cancels between positive and negative terms (image models) | "
        f"the AND-OR literature as issue 21 quotes it (science.md does not pin the paper) | 2 min(P, Q) / (P + Q) "
        f"over salient terms: clean {pct(clean['cancellation_salient'])}, shortcut "
        f"{pct(shortcut['cancellation_salient'])}, overfit-5 {pct(overfit['cancellation_salient'])}; over every "
        f"non-zero term: {pct(clean['cancellation_all_terms'])} / {pct(shortcut['cancellation_all_terms'])} / "
        f"{pct(overfit['cancellation_all_terms'])} | {single_cmd} |",
    ]
    for pair in pairs:
        rows.append(
            f"| (d) independently trained models share about 70% of their salient interactions | Chen et al. ICLR "
            f"2024 (shared interactions; the 70% between two LLM families as issue 21 quotes it) | {pair['a']} vs "
            f"{pair['b']}: {pct(pair['overlap_a_in_b'])} / {pct(pair['overlap_b_in_a'])} of salient terms shared "
            f"with the same sign (chance {pair['chance_a_in_b']:.1%} / {pair['chance_b_in_a']:.1%}), signed IoU "
            f"{pair['iou']:.2f}; joint split: {pct(pair['shared_strength_a'])} / {pct(pair['shared_strength_b'])} "
            f"of salient strength shared ({pair['prompts']} prompts) | `python docs/claims.py --compare-prompts "
            f"{pair['prompts']}` |"
        )
    return "\n".join(rows) + "\n"


def write(text: str, path: Path = CLAIMS_MD) -> None:
    doc = path.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    path.write_text(doc[:start] + text + doc[end:])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=40,
                        help="conflict prompts per model for claims a-c (default 40)")
    parser.add_argument("--compare-prompts", type=int, default=10,
                        help="prompts per model pair for claim d (one joint LP each; default 10)")
    parser.add_argument("--json", action="store_true", help="print the measurements as JSON instead of the table")
    parser.add_argument("--write", action="store_true", help="also replace the table in docs/claims.md")
    parser.add_argument("--from-json", type=Path, default=None, metavar="FILE",
                        help="render the measurements a --json run saved instead of measuring again")
    args = parser.parse_args(argv)
    if args.prompts < 2 or args.compare_prompts < 1:
        print("--prompts must be at least 2 and --compare-prompts at least 1", file=sys.stderr)
        return 2
    if args.from_json is not None:
        data = json.loads(args.from_json.read_text())
    else:
        data = {"single": measure_single(args.prompts), "overlap": measure_overlap(args.compare_prompts)}
    text = table(data)
    print(json.dumps(data, indent=2) if args.json else text, end="\n" if args.json else "")
    if args.write:
        write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
