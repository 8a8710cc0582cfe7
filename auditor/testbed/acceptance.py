"""Proving the metrics where the truth is known: the testbed's planted flaws versus what we measure.

Two claims are checked, each against ground truth the generator and the trainer know:
- misattribution separates the shortcut model from the clean one on prompts where the planted cue
  and the truth disagree (per-prompt AUC), with players labelled from the generator's ground truth;
- the overfitting score ranks the overfit family by its measured generalization gap (Spearman).
Each model is audited as production would audit it: on the answer it actually gave.

Next to them: each figure's stability under bootstrap resampling of the prompts (part of the
verdict only in the dossier world, whose acceptance asks for >= 90%: ``acceptance_stability``); and,
for comparison and never part of the verdict: the fragility of the family's games under parameter
noise (``auditor.metrics.fragility``), an experimental overfitting figure ranked against the same
gaps; the trials (the cancellation-aware misattribution, the mean of per-prompt overfitting scores);
and the reference ranking of the audited prompts' own gold-answer losses. The gap is a held-out loss, so
those losses are the most direct evidence of it the sample holds: where even they fail to order
the family, the prompts do not carry the ordering, whatever the estimator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

from auditor.metrics import fragility as fragility_lib
from auditor.audit import audit_prompt
from auditor.game.scoring import score_masks
from auditor.metrics.audit_metrics import compute_metrics, overfitting_over_window, strength_by_order
from auditor.metrics.net_misattribution import net_misattribution_score
from auditor.testbed import models as testbed
from auditor.testbed import reference_share
from auditor.testbed.acceptance_stability import (
    _ROUNDING,
    DEFAULT_RESAMPLES,
    MISATTRIBUTION_AUC_TARGET,
    OVERFITTING_SPEARMAN_TARGET,
    STABILITY_TARGET,
    fragility_stability,
    loss_stability,
    per_request_stability,
    misattribution_stability,
    overfitting_stability,
    per_prompt_auc,
)
from auditor.testbed.names import CLEAN, DOSSIER, JUDGMENT, OVERFIT_FAMILY, SHORTCUT
from auditor.testbed.prompts import AuditPrompt
from auditor.testbed.train import encode, evaluate_encoded

DEFAULT_PROMPTS = 40
"""Conflict prompts audited per model: the owners' acceptance is read at 40 (20 is a documented reading,
met about 84% of the time by a sound estimator and 88% by the gold-answer loss itself: docs/testbed.md)."""
# The share not shared with the clean model costs a joint LP per model and prompt (3-10 s each at
# 10 players): measured on the first prompts only, the same ones for every model.
DEFAULT_REFERENCE_PROMPTS = 10


@dataclass
class ModelReport:
    name: str
    heldout_accuracy: float
    train_accuracy: float
    generalization_gap: float  # held-out loss minus train loss (nats)
    generalization_gap_accuracy: float = 0.0  # train accuracy minus held-out accuracy
    misattribution: list[float] = field(default_factory=list)
    overfitting: list[float] = field(default_factory=list)
    sparsity: list[int] = field(default_factory=list)
    cancellation: list[float] = field(default_factory=list)
    strength_by_order: list[list[float]] = field(default_factory=list)  # per prompt, nats: the window's input
    window_overfitting: float = 0.0
    fragility: list[float | None] = field(default_factory=list)  # per prompt, see auditor.metrics.fragility
    window_fragility: float | None = None
    answer_loss: list[float] = field(default_factory=list)  # per prompt: gold-answer loss (nats), the reference
    misattribution_net: list[float] = field(default_factory=list)  # trial: auditor.metrics.net_misattribution
    # per prompt: share of salient strength not shared with the world's clean model (reference_share)
    unshared_with_reference: list[float | None] = field(default_factory=list)
    games: list[reference_share.PlayedGame] = field(default_factory=list, repr=False)  # kept for the reference

    def row(self) -> dict[str, float | str]:
        mean = lambda values: float(np.mean(values)) if values else float("nan")  # noqa: E731
        return {
            "model": self.name,
            "heldout_accuracy": self.heldout_accuracy,
            "train_accuracy": self.train_accuracy,
            "generalization_gap": self.generalization_gap,
            "generalization_gap_accuracy": self.generalization_gap_accuracy,
            "prompts": len(self.sparsity),
            "misattribution": mean(self.misattribution),
            "overfitting": self.window_overfitting,
            "overfitting_mean_per_request": mean(self.overfitting),
            "fragility": self.window_fragility,
            "answer_loss": mean(self.answer_loss),
            "sparsity": mean(self.sparsity),
            "cancellation": mean(self.cancellation),
            "misattribution_net": mean(self.misattribution_net),
            "unshared_with_reference": reference_share.mean_share(self.unshared_with_reference),
        }


@dataclass
class ValidationReport:
    models: list[ModelReport]
    misattribution_auc: float
    overfitting_spearman: float
    family: list[str] = field(default_factory=list)
    misattribution_stability: float | None = None  # share of bootstrap resamples meeting the AUC target
    overfitting_stability: float | None = None  # share of bootstrap resamples meeting the Spearman target
    resamples: int = 0
    fragility_spearman: float | None = None  # experimental figure, not an acceptance figure (auditor.metrics.fragility)
    fragility_stability: float | None = None
    loss_spearman: float | None = None  # the reference: the audited prompts' own gold-answer losses vs the gaps
    loss_stability: float | None = None
    # How often a validation on ``subsample`` fresh prompts would meet each ranking target: the share
    # of random subsets of that size (without replacement) of the audited prompts that do.
    subsample: int | None = None
    overfitting_subsample_share: float | None = None
    loss_subsample_share: float | None = None
    # The cancellation-aware misattribution trial (issue 21): its AUC and stability, never the verdict.
    misattribution_net_auc: float | None = None
    misattribution_net_stability: float | None = None
    reference_prompts: int = 0  # the first prompts on which unshared_with_reference was measured (0: none)
    # Trial, never the verdict: the family ranked by the mean of each prompt's own spindle share
    # instead of the window's pooled one (docs/testbed.md, "Dossier world": the window floors at 0
    # where every game's order-1 term outweighs the mid orders).
    per_request_spearman: float | None = None
    per_request_stability: float | None = None
    # The share of resamples each figure must also hold in (None: the point estimate alone decides).
    # The dossier world's acceptance asks for it (issue 19); the judgment world's is the owners'
    # 40-prompt rule, with the stability shares reported beside it.
    stability_target: float | None = None

    @property
    def accepted(self) -> bool:
        return self.misattribution_ok and self.overfitting_ok

    @property
    def misattribution_ok(self) -> bool:
        return (self.misattribution_auc >= MISATTRIBUTION_AUC_TARGET - _ROUNDING
                and self._stable(self.misattribution_stability))

    @property
    def overfitting_ok(self) -> bool:
        """Spearman >= 0.9 (holding in ``stability_target`` of the resamples where one is set), or the
        estimator ranks the family at least as reliably as the reference."""
        return self.overfitting_ranking_ok or self.as_reliable_as_reference

    @property
    def overfitting_ranking_ok(self) -> bool:
        """The first way alone: the Spearman meets its target (and its stability target, if any)."""
        return (self.overfitting_spearman >= OVERFITTING_SPEARMAN_TARGET - _ROUNDING
                and self._stable(self.overfitting_stability))

    def _stable(self, share: float | None) -> bool:
        """Whether a figure's resample share meets the stability target; a required share that was not
        measured (``resamples`` 0) is not met."""
        if self.stability_target is None:
            return True
        return share is not None and share >= self.stability_target - _ROUNDING

    @property
    def as_reliable_as_reference(self) -> bool:
        """The owners' second way to accept the overfitting ranking: on the same bootstrap draws of the
        audited prompts (``overfitting_stability`` and ``loss_stability`` share the seed, so every draw
        resamples the same prompt indices for both), the window score meets Spearman >= 0.9 in at least
        as many draws as the prompts' own gold-answer losses do. When even the losses cannot carry
        the gap ordering, the sample is too small to blame the estimator. Needs both shares
        (``resamples`` > 0); without them only the Spearman counts."""
        if self.overfitting_stability is None or self.loss_stability is None:
            return False
        return self.overfitting_stability >= self.loss_stability

    def to_dict(self) -> dict:
        return {
            "models": [model.row() for model in self.models],
            "per_prompt": {
                model.name: {
                    "misattribution": model.misattribution,
                    "overfitting": model.overfitting,
                    "sparsity": model.sparsity,
                    "cancellation": model.cancellation,
                    "strength_by_order": model.strength_by_order,
                    "fragility": model.fragility,
                    "answer_loss": model.answer_loss,
                    "misattribution_net": model.misattribution_net,
                    "unshared_with_reference": model.unshared_with_reference,
                }
                for model in self.models
            },
            "family": self.family,
            "misattribution_auc": self.misattribution_auc,
            "misattribution_auc_target": MISATTRIBUTION_AUC_TARGET,
            "overfitting_spearman": self.overfitting_spearman,
            "overfitting_spearman_target": OVERFITTING_SPEARMAN_TARGET,
            "misattribution_ok": self.misattribution_ok,
            "overfitting_ok": self.overfitting_ok,
            "as_reliable_as_reference": self.as_reliable_as_reference,
            "misattribution_stability": self.misattribution_stability,
            "overfitting_stability": self.overfitting_stability,
            "resamples": self.resamples,
            "fragility_spearman": self.fragility_spearman,
            "fragility_stability": self.fragility_stability,
            "loss_spearman": self.loss_spearman,
            "loss_stability": self.loss_stability,
            "subsample": self.subsample,
            "overfitting_subsample_share": self.overfitting_subsample_share,
            "loss_subsample_share": self.loss_subsample_share,
            "misattribution_net_auc": self.misattribution_net_auc,
            "misattribution_net_stability": self.misattribution_net_stability,
            "reference_prompts": self.reference_prompts,
            "per_request_spearman": self.per_request_spearman,
            "per_request_stability": self.per_request_stability,
            "stability_target": self.stability_target,
            "accepted": self.accepted,
        }


def audit_model(
    name: str,
    prompts_count: int,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    template_set: str = "standard",
    world: str = JUDGMENT,
    qthres: float = 0.04,
    baseline: str | None = None,
    fragility: bool = True,
    on_prompt: Callable[[str, int], None] | None = None,
) -> ModelReport:
    """Audit one testbed model on conflict prompts from its own world, on its own answers.

    ``baseline``: the masking baseline kind (None: the product's auto choice, see ``lm.resolve_baseline``).
    ``fragility``: also score every prompt's game on a perturbed copy (``auditor.metrics.fragility``).
    """
    model, tokenizer, info = testbed.load(name, root, seed=seed, template_set=template_set, world=world)
    measured = info["metrics"]
    report = ModelReport(
        name=name,
        heldout_accuracy=float(measured["heldout"]["accuracy"]),
        train_accuracy=float(measured["train"]["accuracy"]),
        generalization_gap=float(measured["heldout"]["loss"] - measured["train"]["loss"]),
        generalization_gap_accuracy=float(measured["train"]["accuracy"] - measured["heldout"]["accuracy"]),
    )
    results = []
    noisy = fragility_lib.perturbed_copy(model) if fragility else None
    prompts = testbed.audit_prompts_for(info, prompts_count, conflict=True)
    report.answer_loss = answer_losses(model, tokenizer, prompts)
    for index, prompt in enumerate(prompts):
        audit = audit_prompt(
            model,
            tokenizer,
            prompt=prompt.prompt,
            **players_of(prompt),
            refine=0,
            max_answer_tokens=1,
            qthres=qthres,
            baseline=baseline,
        )
        labels = [player.label for player in audit.game.players]
        metrics = compute_metrics(audit.interactions, labels)
        results.append(audit.interactions)
        if metrics.misattribution is not None:
            report.misattribution.append(metrics.misattribution)
            net = net_misattribution_score(audit.interactions.salient(metrics.salient_threshold), labels)
            report.misattribution_net.append(float(net))  # defined exactly where the score is
        report.games.append(reference_share.PlayedGame(audit.interactions, tuple(audit.game.answer_ids),
                                                       audit.game.baseline_kind))
        report.overfitting.append(metrics.overfitting)
        report.sparsity.append(metrics.sparsity)
        report.cancellation.append(metrics.cancellation)
        report.strength_by_order.append(strength_by_order(audit.interactions).tolist())
        if noisy is not None:  # the same players, answer and kind of baseline, on the perturbed weights
            moved = score_masks(noisy, tokenizer, prompt=prompt.prompt, **players_of(prompt),
                                answer=list(audit.game.answer_ids), max_answer_tokens=1, baseline=baseline)
            report.fragility.append(fragility_lib.game_fragility(audit.game.values, moved.values))
        if on_prompt:
            on_prompt(name, index)
    report.window_overfitting = overfitting_over_window(results).score
    report.window_fragility = fragility_lib.window_fragility(report.fragility) if fragility else None
    return report


def answer_losses(model: Any, tokenizer: Any, prompts: Sequence[AuditPrompt]) -> list[float]:
    """Each prompt's gold-answer loss (nats), measured exactly as the held-out loss of the gap is.

    The family is ranked by that gap from a handful of audited prompts; the same prompts' own
    losses say how much of the gap ordering such a sample can carry at all. One prompt per call,
    so each value is the testbed's own evaluation of that prompt alone.
    """
    return [float(evaluate_encoded(model, encode(tokenizer, [(p.prompt, p.answer)]), threads=1)["loss"])
            for p in prompts]


def validate(
    prompts_count: int = DEFAULT_PROMPTS,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    template_set: str = "standard",
    world: str = JUDGMENT,
    qthres: float = 0.04,
    baseline: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    fragility: bool = True,
    subsample: int | None = None,
    reference_prompts: int = DEFAULT_REFERENCE_PROMPTS,
    workers: int = 1,
    on_prompt: Callable[[str, int], None] | None = None,
) -> ValidationReport:
    """Audit every testbed model of one world and compute the two acceptance figures.

    ``resamples``: bootstrap resamples of the prompts behind each figure's stability (0: none).
    ``subsample``: also estimate, from ``resamples`` random subsets of this many of the audited
    prompts, how often a validation on that many fresh prompts meets each ranking target. Audit
    many (say 100) to ask what 20 or 40 would give: a bootstrap of 20 can only say how stable
    those particular 20 are.
    ``fragility``: also measure ``auditor.metrics.fragility`` (reported, not part of the acceptance).
    ``reference_prompts``: measure each model's share of strength not shared with the clean model
    (``auditor.testbed.reference_share``; reported, not part of the acceptance) on the first this
    many audited prompts (0: not at all).
    ``workers``: models audited in parallel processes (see ``audit_models``).
    """
    names = [CLEAN, SHORTCUT, *OVERFIT_FAMILY]
    reports = audit_models(
        names, prompts_count, workers=workers, on_prompt=on_prompt, root=root, seed=seed, template_set=template_set,
        world=world, qthres=qthres, baseline=baseline, fragility=fragility,
    )
    shortcut, clean = reports[SHORTCUT].misattribution, reports[CLEAN].misattribution
    family = [reports[name] for name in OVERFIT_FAMILY]
    gaps = [m.generalization_gap for m in family]
    rho = spearmanr([m.window_overfitting for m in family], gaps).statistic
    fragile = [m.window_fragility for m in family]
    fragility_rho = (float(spearmanr(fragile, gaps).statistic)
                     if fragility and all(value is not None for value in fragile) else None)
    loss_rho = float(spearmanr([np.mean(m.answer_loss) for m in family], gaps).statistic)
    per_request_rho = float(spearmanr([np.mean(m.overfitting) for m in family], gaps).statistic)
    if reference_prompts > 0 and world == JUDGMENT:  # clean is every other model's reference (see reference_share)
        games = {name: r.games[:reference_prompts] for name, r in reports.items()}
        shares = reference_share.world_reference_shares(games, prompts_count, root=root, seed=seed,
                                                        template_set=template_set, qthres=qthres)
        for name, values in shares.items():
            reports[name].unshared_with_reference = values
    net_shortcut, net_clean = reports[SHORTCUT].misattribution_net, reports[CLEAN].misattribution_net
    return ValidationReport(
        models=list(reports.values()),
        misattribution_auc=per_prompt_auc(shortcut, clean),
        overfitting_spearman=float(rho),
        family=list(OVERFIT_FAMILY),
        misattribution_stability=misattribution_stability(shortcut, clean, resamples) if resamples else None,
        overfitting_stability=overfitting_stability(family, resamples) if resamples else None,
        resamples=resamples,
        fragility_spearman=fragility_rho,
        fragility_stability=fragility_stability(family, resamples) if resamples and fragility_rho is not None else None,
        loss_spearman=loss_rho,
        loss_stability=loss_stability(family, resamples) if resamples else None,
        subsample=subsample,
        overfitting_subsample_share=(overfitting_stability(family, resamples, size=subsample)
                                     if subsample and resamples else None),
        loss_subsample_share=loss_stability(family, resamples, size=subsample) if subsample and resamples else None,
        misattribution_net_auc=per_prompt_auc(net_shortcut, net_clean),
        misattribution_net_stability=(misattribution_stability(net_shortcut, net_clean, resamples)
                                      if resamples else None),
        reference_prompts=min(reference_prompts, prompts_count) if world == JUDGMENT else 0,
        stability_target=STABILITY_TARGET if world == DOSSIER else None,
        per_request_spearman=per_request_rho,
        per_request_stability=per_request_stability(family, resamples) if resamples else None,
    )


def audit_models(
    names: Sequence[str], prompts_count: int, *, workers: int = 1,
    on_prompt: Callable[[str, int], None] | None = None, **options: Any,
) -> dict[str, ModelReport]:
    """``audit_model`` for each name, in order; with ``workers`` > 1 in that many spawned processes.

    Why: a case file's game is 2^10 masks of ~300 tokens, about twenty times a judgment's, and the
    seven audits are independent. A worker runs torch on one thread (the serial path on the caller's
    threads, which can move a game value's last bits). In parallel ``on_prompt`` hears of a model's
    prompts when the model is done.
    """
    if workers <= 1 or len(names) <= 1:
        return {name: audit_model(name, prompts_count, on_prompt=on_prompt, **options) for name in names}
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(names))) as pool:
        jobs = {name: pool.apply_async(_audit_one_thread, (name, prompts_count, options)) for name in names}
        reports = {name: job.get() for name, job in jobs.items()}
    for name, index in ((name, index) for name in names for index in range(prompts_count)):
        if on_prompt:
            on_prompt(name, index)
    return reports


def _audit_one_thread(name: str, prompts_count: int, options: dict[str, Any]) -> ModelReport:
    import torch

    torch.set_num_threads(1)  # two workers on two cores
    return audit_model(name, prompts_count, **options)


def players_of(prompt: Any) -> dict[str, Any]:
    """The audit's players for a testbed prompt: a judgment prompt's labelled word spans, or a case
    file's passages as labelled caller segments (ids ``p1``..), so the dossier world is audited at
    passage granularity exactly as a caller's RAG request would be (coarse level only: the
    acceptance is read on the passages)."""
    segments = getattr(prompt, "segments", None)
    if callable(segments):
        return {"players": "segments", "segments": segments()}
    return {"players": prompt.player_specs()}
