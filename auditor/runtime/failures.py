"""How an audit fails: cancellation, injected faults, and the pipeline stage an error is counted under.

``errors_total{stage}`` must name where an audit broke. An engine may tag its error
(:class:`AuditStageError`); otherwise :func:`classify_stage` reads the traceback and takes the
innermost frame of a known library module. The modules are named by their real ``__name__`` (imported
here, all light: no torch), so moving or renaming one cannot silently mislabel the metric.
"""

from __future__ import annotations

import traceback

import auditor.engine
import auditor.game
import auditor.metrics
from auditor.game import players
from auditor.runtime import records, store

__all__ = ["ERROR_STAGES", "AuditCancelled", "AuditOverBudget", "AuditSkipped", "FaultInjected", "AuditStageError",
           "classify_stage", "MODULE_STAGES"]

ERROR_STAGES: tuple[str, ...] = ("sampling", "handoff", "players", "scoring", "solver", "metrics", "store", "timeout")
"""The values of ``errors_total{stage}``: a fixed set (telemetry refuses any other)."""


class AuditCancelled(Exception):
    """Raised inside an engine that noticed its cancel event (the budget ran out)."""


class AuditSkipped(Exception):
    """Nothing to audit (a prompt with no content words). Recorded with outcome ``skipped`` and
    counted in no error stage: any client can send such prompts, so they must not move the
    auditor's error rate (the ``InteractionAuditorAuditErrorsHigh`` alert)."""


class AuditOverBudget(Exception):
    """The game does not fit a limit (the model's context, ``max_scored_tokens``, ``memory_budget_mb``):
    recorded with outcome ``over_budget``, counted in no error stage (the caller's prompt is too
    long for the configured budget; the auditor did not fail)."""


class FaultInjected(RuntimeError):
    """The error an engine raises under the ``fault="raise"`` setting (tests only)."""


class AuditStageError(Exception):
    """An engine failure tagged with the pipeline stage it happened in (a label of errors_total)."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage}: {type(error).__name__}: {error}")
        self.stage = stage if stage in ERROR_STAGES else "scoring"
        self.error = error


MODULE_STAGES: tuple[tuple[str, str], ...] = (
    (players.__name__, "players"),  # before its package: the innermost match wins, most specific first
    (auditor.game.__name__, "scoring"),
    (auditor.engine.__name__, "solver"),
    (auditor.metrics.__name__, "metrics"),
    (store.__name__, "store"),
    (records.__name__, "store"),
)
"""Library module (or package) -> stage, for errors raised without a tag."""


def classify_stage(error: BaseException, default: str = "scoring") -> str:
    """The ``errors_total`` stage of an exception: its explicit tag, else the innermost
    ``auditor.*`` module in its traceback (torch and transformers frames count as scoring)."""
    if isinstance(error, AuditStageError):
        return error.stage
    stage = None
    for frame, _ in traceback.walk_tb(error.__traceback__):
        module = frame.f_globals.get("__name__", "")
        for prefix, name in MODULE_STAGES:
            if module == prefix or module.startswith(prefix + "."):
                stage = name
                break  # the first (most specific) entry that matches this frame
    if stage is None and type(error).__name__ == "PlayerError":
        stage = "players"
    return stage or default
