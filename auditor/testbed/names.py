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
