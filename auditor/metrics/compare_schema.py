"""The comparison report's schema (pydantic): per prompt, per model, and aggregated figures."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SharedTerm(_Strict):
    kind: Literal["and", "or"]
    players: list[int]
    words: list[str]
    order: int
    value_a: float
    value_b: float
    same_sign: bool


class JointSummary(_Strict):
    alpha: float
    objective: float = Field(description="optimum of the joint objective")
    separate_objective: float = Field(description="the joint objective at the two separate optima (an upper bound)")
    salient_a: int
    salient_b: int
    shared: list[SharedTerm] = Field(description="terms salient in both joint splits, strongest first")
    shared_same_sign: int
    unshared_share_a: float | None = Field(description="share of A's salient joint strength not salient in B")
    unshared_share_b: float | None
    seconds: float


class SideFigures(_Strict):
    salient: int
    v_full: float = Field(description="the model's log-odds of the answer, unmasked")
    normaliser: float
    order_profile_positive: list[float]
    order_profile_negative: list[float]
    strength_profile: list[float] = Field(description="normalised strength per order over all non-zero terms")
    overfitting: float = Field(description="spindle share of the strength profile (metrics.fit_overfitting)")
    misattribution: float | None
    certified_gap: float


class PromptComparison(_Strict):
    index: int
    line: int
    prompt: str
    answer: str
    answer_source: str
    players: list[str]
    labels: list[str]
    n: int
    baseline: str
    a: SideFigures
    b: SideFigures
    overlap_a_in_b: float | None
    overlap_b_in_a: float | None
    chance_a_in_b: float | None
    chance_b_in_a: float | None
    chance_p95_a_in_b: float | None
    chance_p95_b_in_a: float | None
    iou: float | None
    joint: JointSummary | None


class ModelSummary(_Strict):
    name: str
    model_id: str
    revision: str | None
    path: str | None
    window_overfitting: float | None = Field(description="profiles averaged over prompts (per n), fitted once")
    mean_overfitting: float | None
    mean_salient: float | None
    order_profile_positive: list[float] = Field(description="mean over prompts, by order")
    order_profile_negative: list[float]
    mean_unshared_share: float | None


class Aggregate(_Strict):
    prompts: int
    overlap_a_in_b: float | None
    overlap_b_in_a: float | None
    chance_a_in_b: float | None
    chance_b_in_a: float | None
    iou: float | None
    more_non_generalizable: Literal["a", "b", "tie"] | None = Field(
        description="the model with the larger window spindle share")
    spindle_margin: float | None = Field(description="window overfitting of B minus A")
    prompts_b_more_spindle: int = Field(description="prompts where B's spindle share exceeds A's")
    mean_shared: float | None


class CompareSettings(_Strict):
    answer: str
    n_players: int
    qthres: float
    alpha: float
    salient_threshold: float
    baseline: str
    max_answer_tokens: int
    chance_draws: int
    seed: int
    joint: bool


class ComparisonReport(_Strict):
    kind: Literal["interaction-auditor.compare"] = "interaction-auditor.compare"
    schema_version: int = 1
    model_a: ModelSummary
    model_b: ModelSummary
    settings: CompareSettings
    aggregate: Aggregate
    prompts: list[PromptComparison]
