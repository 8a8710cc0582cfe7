"""The testbed's model names and cache variable, importable without torch.

The command line builds its parsers (``--only`` choices, ``--root`` help) from these, and
``interaction-auditor --help`` must not pay for importing torch and transformers (seconds), which
``auditor.testbed.models`` does at import. ``models`` imports them from here.
"""

from __future__ import annotations

ENV_ROOT = "AUDITOR_TESTBED_DIR"
"""Environment variable naming the model cache directory."""
CLEAN = "clean"
SHORTCUT = "shortcut"
OVERFIT_FAMILY: tuple[str, ...] = tuple(f"overfit-{level}" for level in range(1, 6))
"""In increasing order of the overfit knob (fewer examples, more label noise)."""
MOST_OVERFIT = OVERFIT_FAMILY[-1]
MODEL_NAMES: tuple[str, ...] = (CLEAN, SHORTCUT, *OVERFIT_FAMILY)

JUDGMENT = "judgment"
DOSSIER = "dossier"
WORLDS: tuple[str, ...] = (JUDGMENT, DOSSIER)
"""The testbed's worlds: one-paragraph judgments (the default, the service's model) and case files
of passages (``auditor.testbed.dossier_corpus``). Each builds the same family of model names."""
WORLD_PREFIX = {JUDGMENT: "", DOSSIER: "dossier-"}
"""How a ``testbed:`` model name picks its world: ``testbed:clean``, ``testbed:dossier-clean``."""
TESTBED_NAMES: tuple[str, ...] = tuple(WORLD_PREFIX[world] + name for world in WORLDS for name in MODEL_NAMES)


def split_testbed_name(name: str) -> tuple[str, str]:
    """``(world, model name)`` of a ``testbed:`` name; a ValueError listing the names otherwise."""
    for world in WORLDS[::-1]:  # the longest prefix first
        prefix = WORLD_PREFIX[world]
        if name.startswith(prefix) and name[len(prefix):] in MODEL_NAMES:
            return world, name[len(prefix):]
    raise ValueError(f"unknown testbed model {name!r}; known: {list(TESTBED_NAMES)}")
