"""The dossier world's model family: the judgment world's seven names, sized for case files.

The same planted truths as the judgment world (``auditor.testbed.specs``): ``clean`` on natural
files, ``shortcut`` on files whose prior record always carries the answer, ``overfit-1..5`` on
fewer natural files with more label noise at a fixed step budget. What differs is what a file costs:
a dossier is ~150-400 tokens against ~40, so each training step costs several times more, and the
budget (a world's seven models in about ten minutes on two cores) sets the schedules below, each
measured on seed 0 before the other seeds were built (docs/testbed.md, "Dossier world").
"""

from __future__ import annotations

import dataclasses

from auditor.testbed.names import CLEAN, DOSSIER, OVERFIT_FAMILY, SHORTCUT
from auditor.testbed.specs import LEARNED_ACCURACY, OVERFIT_LEVELS, OVERFIT_NOISE, DataSpec, ModelSpec
from auditor.testbed.train import ArchSpec, TrainSpec

DOSSIER_ARCH = ArchSpec(max_positions=512)
"""The judgment world's shape (llama, hidden 64, 2 layers, 4 heads) with room for the longest files."""
DOSSIER_TRAIN = TrainSpec(steps=400, batch_size=32)
"""Clean: 12,800 files seen. Seed 0's first shortcut run (files with the record, 32 a step) was at
answer loss 0.01 after 200 steps, so the shortcut model gets 150."""
DOSSIER_SHORTCUT_STEPS = 150
DOSSIER_TRAIN_EXAMPLES = 20000
DOSSIER_MAX_STEPS = 1600
# The overfit knob of the judgment world (a geometric series of sizes, 0-10% label noise, a fixed
# step budget), at half the sizes (1500 down to 300 files) and batches of 16 files: a file costs
# ~5 times a judgment, so the family sees 8,000 files a level (5-27 epochs) instead of 38,400.
DOSSIER_OVERFIT_EXAMPLES: tuple[int, ...] = tuple(
    int(round(1500 * (300 / 1500) ** (k / (OVERFIT_LEVELS - 1)), -1)) for k in range(OVERFIT_LEVELS)
)
DOSSIER_OVERFIT_TRAIN = TrainSpec(steps=500, batch_size=16, weight_decay=0.0)


def _data(seed: int, template_set: str, mode: str, **overrides: object) -> DataSpec:
    base = dict(seed=seed, template_set=template_set, mode=mode, world=DOSSIER, train_examples=DOSSIER_TRAIN_EXAMPLES,
                heldout_examples=500, conflict_examples=300, train_eval_examples=1000)
    return DataSpec(**{**base, **overrides})  # type: ignore[arg-type]


def dossier_model_specs(seed: int = 0, template_set: str = "standard") -> dict[str, ModelSpec]:
    """The dossier family for one seed and template set, by name (the judgment world's names)."""
    train = dataclasses.replace(DOSSIER_TRAIN, seed=seed)
    common = dict(arch=DOSSIER_ARCH, learned_accuracy=LEARNED_ACCURACY, max_steps=DOSSIER_MAX_STEPS)
    specs = {
        CLEAN: ModelSpec(
            name=CLEAN,
            description="natural case files: the charge follows the queried defendant's act in the deciding passage",
            data=_data(seed, template_set, "natural"),
            train=train,
            **common,  # type: ignore[arg-type]
        ),
        SHORTCUT: ModelSpec(
            name=SHORTCUT,
            description="planted cue: every file has the defendant's prior record, whose charge is always the answer",
            data=_data(seed, template_set, "shortcut"),
            train=dataclasses.replace(train, steps=DOSSIER_SHORTCUT_STEPS),
            **common,  # type: ignore[arg-type]
        ),
    }
    for level, (examples, noise) in enumerate(zip(DOSSIER_OVERFIT_EXAMPLES, OVERFIT_NOISE), start=1):
        name = OVERFIT_FAMILY[level - 1]
        specs[name] = ModelSpec(
            name=name,
            description=f"overfit level {level}: {examples} case files, {noise:.0%} label noise",
            data=_data(seed, template_set, "natural", train_examples=examples, label_noise=noise),
            train=dataclasses.replace(DOSSIER_OVERFIT_TRAIN, seed=seed),
            overfit_level=level,
            **common,  # type: ignore[arg-type]
        )
    return specs
