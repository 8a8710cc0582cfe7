"""The interaction engine: a game's 2^n outputs in, interactions and values out.

Two paths, for two questions. ``extract_interactions`` / ``extract_batch`` answer "which few AND-OR
interactions explain this game?": the sparse split of science.md section 2, an LP solved to a
certified optimum (``SolverOptions``; the result is an ``Interactions`` with ``SalientTerm``s).
The functions of ``auditor.engine.exact`` answer "what are the game's exact values?": Möbius and
co-Möbius transforms, Shapley and Banzhaf values, and the SII, STII, FSII and Banzhaf interaction
indices, in O(n 2^n) or O(n^2 2^n), numpy or torch in, float64 out.

Names are resolved lazily, so ``import auditor.engine`` stays cheap (no torch until a name is used);
``auditor/__init__.py`` re-exports everything listed in ``__all__``.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> the module (under auditor.engine) that defines it
_SOURCES = {
    "extract_interactions": "extraction",
    "extract_batch": "extraction",
    "SolverOptions": "extraction",
    "Interactions": "interactions",
    "SalientTerm": "interactions",
    "moebius_transform": "exact",
    "inverse_moebius_transform": "exact",
    "comoebius_transform": "exact",
    "inverse_comoebius_transform": "exact",
    "shapley_values": "exact",
    "banzhaf_values": "exact",
    "shapley_interaction_index": "exact",
    "shapley_taylor_index": "exact",
    "faithful_shapley_index": "exact",
    "banzhaf_interaction_index": "exact",
    "interaction_index": "exact",
}

__all__ = list(_SOURCES)


def __getattr__(name: str) -> Any:
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
