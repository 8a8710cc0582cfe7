"""errors_total{stage}: the stage of an untagged error comes from the library module it was raised in,
named by the modules' real ``__name__`` (a moved module cannot silently change the label)."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from auditor.runtime.failures import ERROR_STAGES, MODULE_STAGES, AuditStageError, classify_stage
from auditor.runtime.telemetry import ERROR_STAGES as TELEMETRY_STAGES


def _raised_by(call) -> BaseException:
    try:
        call()
    except Exception as error:  # noqa: BLE001 - the error under test
        return error
    raise AssertionError("the call did not raise")


def test_every_mapped_module_exists_and_maps_to_a_known_stage() -> None:
    for module, stage in MODULE_STAGES:
        assert importlib.import_module(module).__name__ == module
        assert stage in ERROR_STAGES
    assert TELEMETRY_STAGES is ERROR_STAGES  # one list: telemetry refuses what the worker cannot emit


def test_errors_are_classified_by_the_module_that_raised_them(tmp_path) -> None:
    from auditor.engine.extraction import extract_interactions
    from auditor.game.players import PlayerSpec
    from auditor.metrics.audit_metrics import compute_metrics
    from auditor.runtime.store import open_store

    assert classify_stage(_raised_by(lambda: extract_interactions(np.ones(3)))) == "solver"
    assert classify_stage(_raised_by(lambda: PlayerSpec(text=""))) == "players"
    assert classify_stage(_raised_by(lambda: compute_metrics(None, None))) == "metrics"
    assert classify_stage(_raised_by(lambda: open_store("postgresql+nope://x"))) == "store"


def test_a_tag_wins_and_unknown_code_falls_back_to_the_default() -> None:
    assert classify_stage(AuditStageError("metrics", ValueError("x"))) == "metrics"
    assert AuditStageError("no-such-stage", ValueError("x")).stage == "scoring"
    assert classify_stage(_raised_by(lambda: int("x")), default="handoff") == "handoff"


@pytest.mark.parametrize("stage", ERROR_STAGES)
def test_tagged_stages_are_kept(stage: str) -> None:
    assert AuditStageError(stage, RuntimeError("x")).stage == stage
