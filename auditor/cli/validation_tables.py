"""The tables ``testbed validate`` prints: per model, then the acceptance checks beside their
resample shares, the reference and the trials.

Why a module of its own: what a reader sees of a validation (which row passes, what each target
says, which figures are trials) is one concern, and the command's parsing and running another.
Imports rich and the acceptance module inside the functions, as the command does, so ``--help``
stays instant.
"""

from __future__ import annotations

from typing import Any


def validation_tables(report: Any) -> list[Any]:
    """The per-model table and the acceptance table of a ``ValidationReport``."""
    from rich.table import Table

    from auditor.testbed import acceptance

    models_table = Table(title="testbed validation (means over the audited conflict prompts)")
    columns = ("model", "held-out acc", "gap (nats)", "gap acc", "misattribution", "net misattr. (trial)",
               "overfitting", "overfit/request", "fragility", "answer loss", "sparsity", "cancellation",
               "not shared with clean" + (f" (first {report.reference_prompts})" if report.reference_prompts else ""),
               "prompts")
    for column in columns:
        models_table.add_column(column, justify="left" if column == "model" else "right")
    for model in report.models:
        row = model.row()
        models_table.add_row(
            model.name,
            f"{row['heldout_accuracy']:.3f}",
            f"{row['generalization_gap']:+.3f}",
            f"{row['generalization_gap_accuracy']:+.3f}",
            f"{row['misattribution']:.3f}",
            f"{row['misattribution_net']:.3f}",
            f"{row['overfitting']:.3f}",
            f"{row['overfitting_mean_per_request']:.3f}",
            "n/a" if row["fragility"] is None else f"{row['fragility']:.3f}",
            f"{row['answer_loss']:.3f}",
            f"{row['sparsity']:.1f}",
            f"{row['cancellation']:.3f}",
            _reference_cell(model.name, row["unshared_with_reference"]),
            f"{row['prompts']}",
        )
    checks = Table(title="acceptance")
    stable_column = f"met in resamples ({report.resamples})" if report.resamples else None
    subset_column = (f"met by {report.subsample} of the prompts ({report.resamples} subsets)"
                     if report.subsample else None)
    for column in ("check", "value", "target", "result", stable_column, subset_column):
        if column is not None:
            checks.add_column(column, justify="left" if column in ("check", "result") else "right")
    verdict = lambda ok: "[green]pass[/green]" if ok else "[red]FAIL[/red]"  # noqa: E731
    share = lambda value: "n/a" if value is None else f"{value:.0%}"  # noqa: E731
    in_resamples = (f" in >= {report.stability_target:.0%} of resamples"
                    if report.stability_target is not None else "")
    checks.add_row(
        "misattribution AUC, shortcut vs clean (per prompt)",
        f"{report.misattribution_auc:.3f}",
        f">= {acceptance.MISATTRIBUTION_AUC_TARGET}{in_resamples}",
        verdict(report.misattribution_ok),
        *([share(report.misattribution_stability)] if stable_column else []),
        *(["-"] if subset_column else []),
    )
    checks.add_row(
        f"overfitting Spearman vs measured gap ({len(report.family)} models)",
        f"{report.overfitting_spearman:.3f}",
        f">= {acceptance.OVERFITTING_SPEARMAN_TARGET}{in_resamples}, or as reliable as the reference",
        verdict(report.overfitting_ok) + ("" if report.overfitting_ranking_ok or not report.overfitting_ok
                                          else " (as reliable as the reference)"),
        *([share(report.overfitting_stability)] if stable_column else []),
        *([share(report.overfitting_subsample_share)] if subset_column else []),
    )
    _add_trial_rows(checks, report, bool(stable_column), bool(subset_column))
    if report.fragility_spearman is not None:  # reported for comparison, never part of the verdict
        checks.add_row(
            "fragility Spearman vs measured gap (experimental, not an acceptance figure)",
            f"{report.fragility_spearman:.3f}",
            f"({acceptance.OVERFITTING_SPEARMAN_TARGET})",
            "-",
            *([share(report.fragility_stability)] if stable_column else []),
            *(["-"] if subset_column else []),
        )
    if report.loss_spearman is not None:  # what the sample itself can tell, never part of the verdict
        checks.add_row(
            "reference: these prompts' gold-answer loss vs measured gap (not an acceptance figure)",
            f"{report.loss_spearman:.3f}",
            f"({acceptance.OVERFITTING_SPEARMAN_TARGET})",
            "-",
            *([share(report.loss_stability)] if stable_column else []),
            *([share(report.loss_subsample_share)] if subset_column else []),
        )
    return [models_table, checks]


def _reference_cell(name: str, share: float | None) -> str:
    """The share of a model's salient strength not shared with the world's clean model (its
    reference, ``auditor.testbed.reference_share``); the clean model is the reference itself."""
    from auditor.testbed.names import CLEAN

    if name == CLEAN:
        return "(reference)"
    return "n/a" if share is None else f"{share:.0%}"


def _add_trial_rows(checks: Any, report: Any, stable: bool, subset: bool) -> None:
    """The trials beside the acceptance figures they might replace, on the same bootstrap draws, never
    part of the verdict: the cancellation-aware misattribution (``auditor.metrics.net_misattribution``)
    and the overfitting ranking by the mean of per-prompt scores."""
    from auditor.testbed import acceptance

    share = lambda value: "n/a" if value is None else f"{value:.0%}"  # noqa: E731
    if report.misattribution_net_auc is not None:
        checks.add_row(
            "misattribution AUC, cancellation-aware (trial, not an acceptance figure)",
            f"{report.misattribution_net_auc:.3f}",
            f"({acceptance.MISATTRIBUTION_AUC_TARGET})",
            "-",
            *([share(report.misattribution_net_stability)] if stable else []),
            *(["-"] if subset else []),
        )
    if report.per_request_spearman is not None:
        checks.add_row(
            "overfitting Spearman, mean of per-prompt scores (trial, not an acceptance figure)",
            f"{report.per_request_spearman:.3f}",
            f"({acceptance.OVERFITTING_SPEARMAN_TARGET})",
            "-",
            *([share(report.per_request_stability)] if stable else []),
            *(["-"] if subset else []),
        )
