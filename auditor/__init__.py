"""interaction-auditor: AND-OR interactions of a served LLM's answers, as production metrics.

``from auditor import ...`` is the public API; everything else is reached through it or through the
package that owns it (docs/contracts.md draws the floors: engine < game < audit < metrics < testbed <
runtime < reports < cli). The library is pure Python + torch and never imports bentoml: the services
in ``service/`` call it, it never calls them.

Names resolve lazily (PEP 562): ``import auditor`` and ``interaction-auditor --help`` load neither
torch nor the solver; the first use of a name imports the module that owns it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # engine: the sparse AND-OR split of any game, certified
    "extract_interactions": "auditor.engine.extraction",
    "extract_batch": "auditor.engine.extraction",
    "SolverOptions": "auditor.engine.extraction",
    "Interactions": "auditor.engine.interactions",
    "SalientTerm": "auditor.engine.interactions",
    # engine: exact values of any game (Möbius, Shapley, Banzhaf and interaction indices)
    "moebius_transform": "auditor.engine.exact",
    "inverse_moebius_transform": "auditor.engine.exact",
    "comoebius_transform": "auditor.engine.exact",
    "inverse_comoebius_transform": "auditor.engine.exact",
    "shapley_values": "auditor.engine.exact",
    "banzhaf_values": "auditor.engine.exact",
    "shapley_interaction_index": "auditor.engine.exact",
    "shapley_taylor_index": "auditor.engine.exact",
    "faithful_shapley_index": "auditor.engine.exact",
    "banzhaf_interaction_index": "auditor.engine.exact",
    "interaction_index": "auditor.engine.exact",
    # game and audit: one model, one prompt, one answer
    "PlayerSpec": "auditor.game.players",
    "PlayerError": "auditor.game.players",
    "SegmentSpec": "auditor.game.granularity",
    "GRANULARITIES": "auditor.game.granularity",
    "OverBudgetError": "auditor.game.planning",
    "score_masks": "auditor.game.scoring",
    "GameValues": "auditor.game.scoring",
    "LoadedModel": "auditor.game.loading",
    "ModelLoadError": "auditor.game.loading",
    "audit_prompt": "auditor.audit",
    "AuditResult": "auditor.audit",
    # metrics
    "compute_metrics": "auditor.metrics.audit_metrics",
    "AuditMetrics": "auditor.metrics.audit_metrics",
    "overfitting_over_window": "auditor.metrics.audit_metrics",
    # runtime: what the services drive
    "AuditorSettings": "auditor.runtime.settings",
    "load_settings": "auditor.runtime.settings",
    "load_model": "auditor.runtime.model_source",
    "Sampler": "auditor.runtime.sampling",
    "SamplingSignals": "auditor.runtime.sampling",
    "AuditJob": "auditor.runtime.jobs",
    "ChatMessage": "auditor.runtime.jobs",
    "PlayerHint": "auditor.runtime.jobs",
    "SegmentHint": "auditor.runtime.jobs",
    "AuditRecord": "auditor.runtime.records",
    "open_store": "auditor.runtime.store",
    "AuditStore": "auditor.runtime.store",
    "AuditWorker": "auditor.runtime.worker",
    "ModelJobRunner": "auditor.runtime.job_runner",
    "AuditorTelemetry": "auditor.runtime.telemetry",
    # reports
    "build_report": "auditor.reports",
    "render_html": "auditor.reports",
    "render_json": "auditor.reports",
    "ReportModel": "auditor.reports",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'auditor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once; later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from auditor.audit import AuditResult, audit_prompt
    from auditor.engine.exact import (
        banzhaf_interaction_index,
        banzhaf_values,
        comoebius_transform,
        faithful_shapley_index,
        interaction_index,
        inverse_comoebius_transform,
        inverse_moebius_transform,
        moebius_transform,
        shapley_interaction_index,
        shapley_taylor_index,
        shapley_values,
    )
    from auditor.engine.extraction import SolverOptions, extract_batch, extract_interactions
    from auditor.engine.interactions import Interactions, SalientTerm
    from auditor.game.loading import LoadedModel, ModelLoadError
    from auditor.game.granularity import GRANULARITIES, SegmentSpec
    from auditor.game.planning import OverBudgetError
    from auditor.game.players import PlayerError, PlayerSpec
    from auditor.game.scoring import GameValues, score_masks
    from auditor.metrics.audit_metrics import AuditMetrics, compute_metrics, overfitting_over_window
    from auditor.reports import ReportModel, build_report, render_html, render_json
    from auditor.runtime.job_runner import ModelJobRunner
    from auditor.runtime.jobs import AuditJob, ChatMessage, PlayerHint, SegmentHint
    from auditor.runtime.model_source import load_model
    from auditor.runtime.records import AuditRecord
    from auditor.runtime.sampling import Sampler, SamplingSignals
    from auditor.runtime.settings import AuditorSettings, load_settings
    from auditor.runtime.store import AuditStore, open_store
    from auditor.runtime.telemetry import AuditorTelemetry
    from auditor.runtime.worker import AuditWorker
