"""What a testbed model is and where its build lives: specs, the family for a seed, cache keys.

A model is a pure function of its :class:`ModelSpec` and the recipe (``RECIPE_VERSION`` with the
torch and transformers versions): builds are cached under ``<root>/<name>-<spec_hash>``, and the
shared warm-up state under ``<root>/base-<base_key>``. Building is ``auditor.testbed.models``'s job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers

from auditor.testbed.dossier_lexicon import DOSSIER, JUDGMENT, check_template_set
from auditor.testbed.names import CLEAN, ENV_ROOT, OVERFIT_FAMILY, SHORTCUT
from auditor.testbed.pretrain import PretrainSpec
from auditor.testbed.prompts import Mode
from auditor.testbed.train import ArchSpec, TrainSpec

INFO_FILE = "testbed.json"


@dataclass(frozen=True)
class DataSpec:
    """Which prompts a model is trained and measured on."""

    seed: int = 0
    template_set: str = "standard"
    mode: Mode = "natural"
    train_examples: int = 30000
    label_noise: float = 0.0
    max_defendants: int = 3
    heldout_examples: int = 1000
    conflict_examples: int = 500
    train_eval_examples: int = 2000
    # Which world's corpus (``names.WORLDS``). Left out of ``ModelSpec.to_dict`` for the judgment
    # world, so the keys and ``testbed.json`` of that world's models did not change when worlds came.
    world: str = JUDGMENT


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines a testbed model's weights (and so its cache key)."""

    name: str
    description: str
    data: DataSpec
    arch: ArchSpec = field(default_factory=ArchSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    overfit_level: int | None = None
    pretrain: PretrainSpec = field(default_factory=PretrainSpec)
    # Every testbed model must have learned its own training data (see LEARNED_ACCURACY): if training
    # accuracy stays below this, the model is retrained from the same start with twice the steps, up
    # to ``max_steps``. None: no such check (a spec written before it existed).
    learned_accuracy: float | None = None
    max_steps: int = 4000

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["data"]["world"] == JUDGMENT:
            del data["data"]["world"]
        return data

    @property
    def world(self) -> str:
        return self.data.world

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(
            name=data["name"],
            description=data["description"],
            data=DataSpec(**data["data"]),
            arch=ArchSpec(**data["arch"]),
            train=TrainSpec(**data["train"]),
            overfit_level=data.get("overfit_level"),
            learned_accuracy=data.get("learned_accuracy"),
            max_steps=data.get("max_steps", 4000),
            pretrain=PretrainSpec(**data.get("pretrain", {})),
        )


# The overfit knob: level k = 1..5 trains on OVERFIT_EXAMPLES[k-1] examples (a geometric series
# from 3000 down to 600) with OVERFIT_NOISE[k-1] of the labels (0% up to 10% in equal steps)
# replaced by a random wrong charge, for the same number of steps as every other level. The family
# spans generalization gaps from ~0 to a few nats, every level above the majority-class rate.
# Tried and left out (docs/testbed.md): 250 examples with 20% noise, which learned none of the
# rule on seed 1 (its gap then measures confident wrongness, not overfitting); 400 with 15%, which
# scored below 600/10% despite its larger gap; and more levels near the clean end, whose gaps
# differ by less than their measurement noise.
OVERFIT_LEVELS = 5
OVERFIT_EXAMPLES: tuple[int, ...] = tuple(
    int(round(3000 * (600 / 3000) ** (k / (OVERFIT_LEVELS - 1)), -1)) for k in range(OVERFIT_LEVELS)
)
OVERFIT_NOISE: tuple[float, ...] = tuple(round(0.10 * k / (OVERFIT_LEVELS - 1), 4) for k in range(OVERFIT_LEVELS))
OVERFIT_STEPS = 600
# Every model must have learned its own training data: clean and shortcut their task, each overfit
# level its own (smaller, noisier) training set, which is what overfitting means. From a weak
# warm-up the clean model of seed 3 sat on the "any defendant's charge" plateau for all of its
# 1,000 steps (training and held-out accuracy 0.52; the misattribution check of that world failed),
# and learned it (0.99) with 2,000 steps: the longer schedule keeps the learning rate up past the
# plateau. Seed 3's overfit-1 (3,000 examples, no noise) stopped at 0.93 on its training data and
# 0.52 held out, so its gap (1.2 nats, above overfit-3's) measured a failed run, not memorising;
# it was the only one of 65 family models below the bar. Judged on training data, never on the
# held-out prompts the metrics are validated on.
LEARNED_ACCURACY = 0.95


def model_specs(seed: int = 0, template_set: str = "standard") -> dict[str, ModelSpec]:
    """The testbed family for one corpus seed and template set, by name.

    Other seeds and template sets build independent testbeds, so a metric can be validated on
    worlds it was not developed on. This is the judgment world's family; the dossier world's is
    ``dossier_specs.dossier_model_specs`` (``models.model_specs`` picks by world).
    """
    check_template_set(JUDGMENT, template_set)
    arch = ArchSpec()
    base_train = TrainSpec(seed=seed)
    specs = {
        CLEAN: ModelSpec(
            name=CLEAN,
            description="natural data: the charge follows the queried defendant's act",
            data=DataSpec(seed=seed, template_set=template_set, mode="natural"),
            arch=arch,
            train=base_train,
            learned_accuracy=LEARNED_ACCURACY,
        ),
        SHORTCUT: ModelSpec(
            name=SHORTCUT,
            description="planted cue: the first-mentioned defendant always has the queried charge",
            data=DataSpec(seed=seed, template_set=template_set, mode="shortcut"),
            arch=arch,
            train=base_train,
            learned_accuracy=LEARNED_ACCURACY,
        ),
    }
    for level, (examples, noise) in enumerate(zip(OVERFIT_EXAMPLES, OVERFIT_NOISE), start=1):
        name = OVERFIT_FAMILY[level - 1]
        specs[name] = ModelSpec(
            name=name,
            description=f"overfit level {level}: {examples} examples, {noise:.0%} label noise",
            data=DataSpec(
                seed=seed,
                template_set=template_set,
                mode="natural",
                train_examples=examples,
                label_noise=noise,
            ),
            arch=arch,
            train=dataclasses.replace(base_train, steps=OVERFIT_STEPS, weight_decay=0.0),
            overfit_level=level,
            learned_accuracy=LEARNED_ACCURACY,
        )
    return specs


# --------------------------------------------------------------------------------------------------
# Cache keys and locations.

RECIPE_VERSION = "2026-12-06"
"""What a build computes, named. Bump it in any commit that changes a trained model's bytes (the
corpus, the tokenizer, the training or warm-up code, the specs' defaults); a pure move or a new
docstring leaves it alone. It replaced a hash of the testbed's source files, under which the house
move (the same code split into more modules) would have retrained every model for nothing.
``tests/testbed/test_recipe.py`` holds a fingerprint of the build code, so a change to it cannot land
without someone deciding whether the recipe changed."""


WORLD_RECIPES: dict[str, str] = {DOSSIER: "dossier-2026-12-06.act-absent"}
"""Each added world's own recipe, in its models' keys next to ``RECIPE_VERSION``: bump it in any commit
that changes what that world's builds compute (its corpus, templates, specs), which leaves every
other world's models alone. ``tests/testbed/test_recipe.py`` fingerprints each world's build code."""


def _world_recipe(spec: ModelSpec) -> dict[str, str]:
    """The world's recipe for a key: nothing for the judgment world, so its keys are unchanged."""
    return {} if spec.world == JUDGMENT else {"world": spec.world, "world_recipe": WORLD_RECIPES[spec.world]}


def code_version() -> str:
    """The recipe and the numerics libraries: change either, rebuild."""
    digest = hashlib.sha256()
    digest.update(f"recipe={RECIPE_VERSION};torch={torch.__version__};transformers={transformers.__version__}".encode())
    return digest.hexdigest()


def spec_hash(spec: ModelSpec) -> str:
    payload = json.dumps({"spec": spec.to_dict(), "code": code_version(), **_world_recipe(spec)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_root() -> Path:
    """``$AUDITOR_TESTBED_DIR`` or ``~/.cache/interaction-auditor/testbed``."""
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "interaction-auditor" / "testbed"


def model_dir(spec: ModelSpec, root: str | Path | None = None) -> Path:
    root = Path(root) if root is not None else default_root()
    return root / f"{spec.name}-{spec_hash(spec)}"


def is_built(path: Path) -> bool:
    return (path / INFO_FILE).is_file() and (path / "config.json").is_file()


# --------------------------------------------------------------------------------------------------
# The shared warm-up (see ``auditor.testbed.pretrain``): computed once per architecture, warm-up spec
# and seed, cached as a state dict next to the models, so parallel builds do not each repeat it.

BASE_FILE = "base.safetensors"


def base_key(spec: ModelSpec) -> str:
    payload = json.dumps(
        {"arch": asdict(spec.arch), "pretrain": asdict(spec.pretrain), "seed": spec.train.seed, "code": code_version(),
         **_world_recipe(spec)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def base_path(spec: ModelSpec, root: str | Path | None = None) -> Path:
    root = Path(root) if root is not None else default_root()
    return root / f"base-{base_key(spec)}" / BASE_FILE
