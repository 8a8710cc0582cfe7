"""The compliance report's schema: one pydantic model, the single source of its JSON and its HTML.

``auditor.reports.build`` fills it from the audit store; ``auditor.reports.html`` draws it. A report is
read back with ``ReportModel.model_validate_json``; ``REPORT_SCHEMA_VERSION`` changes when a reader
of an older report would misread a newer one. ``METHODS`` is science.md section 3 in plain words.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

REPORT_SCHEMA_VERSION = 1
DEFAULT_TOP_TERMS = 5
DEFAULT_MAX_FLAGGED = 50
DEFAULT_BINS = 20


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Period(_Strict):
    since: datetime | None = Field(description="inclusive lower bound on created_at (None: from the first record)")
    until: datetime | None = Field(description="exclusive upper bound on created_at (None: up to now)")
    model: str | None = Field(None, description="model_id filter, when the report covers one model")
    first_audit: datetime | None = None
    last_audit: datetime | None = None


class StoreInfo(_Strict):
    url: str
    records_in_store: int


class WindowOverfitting(_Strict):
    """The window score of one model over the audits with ``n`` players (profiles pooled, then fitted)."""

    n: int
    audits: int
    score: float
    decay_weight: float
    spindle_weight: float


class ModelIdentity(_Strict):
    model_id: str
    revisions: list[str]
    auditor_versions: list[str]
    labels: list[str] = Field(description="metric labels (settings.model_label) seen")
    dtypes: list[str]
    audits: int
    successful: int
    flagged: int
    first_at: datetime | None
    last_at: datetime | None
    mean_overfitting: float | None
    mean_misattribution: float | None
    mean_sparsity: float | None
    window_overfitting: list[WindowOverfitting]


class CountRow(_Strict):
    sampling_reason: str
    outcome: str
    count: int


class Counts(_Strict):
    total: int
    flagged: int
    by_reason: dict[str, int]
    by_outcome: dict[str, int]
    by_model: dict[str, int]
    by_flag: dict[str, int]
    table: list[CountRow] = Field(description="counts by (sampling reason, outcome)")


class HistogramBin(_Strict):
    lo: float
    hi: float
    count: int


class Distribution(_Strict):
    metric: Literal["overfitting", "misattribution", "sparsity"]
    title: str
    description: str
    count: int = Field(description="audits with a value")
    missing: int = Field(description="successful audits without a value (e.g. misattribution without labels)")
    mean: float | None
    median: float | None
    p90: float | None
    min: float | None
    max: float | None
    threshold: float | None = Field(description="flag threshold of the audits' settings (most common value)")
    at_or_above_threshold: int | None
    bins: list[HistogramBin]


class PromptSegment(_Strict):
    """A piece of the prompt as stored: background text (``player`` None) or one player's span."""

    text: str
    player: int | None = None


class PlayerView(_Strict):
    index: int
    text: str
    label: str
    group: str | None = None
    segment_id: str | None = Field(None, description="coarse players: the segment id (doc-3, s2, m1:user)")


class TermView(_Strict):
    kind: Literal["and", "or"]
    players: list[int]
    words: list[str]
    order: int
    value: float
    strength: float
    share: float = Field(description="strength / total salient strength of the audit")


class RefinementView(_Strict):
    """The second level of a coarse-to-fine audit: word players inside the refined coarse players."""

    granularity: str | None = None
    refined_players: list[int] = Field(description="indices of the coarse players refined into words")
    players: list[PlayerView] = Field(default_factory=list)
    top_terms: list[TermView] = Field(default_factory=list)
    salient_total: int = 0
    misattribution: float | None = None
    note: str | None = Field(None, description="why no refinement game ran (e.g. the token budget)")


class FlaggedAudit(_Strict):
    audit_id: str
    request_id: str
    created_at: datetime
    model_id: str
    model_revision: str | None
    sampling_reason: str
    flags: list[str]
    redaction: str
    overfitting: float | None
    misattribution: float | None
    sparsity: int | None
    answer: str | None
    prompt_kept: bool = Field(description="whether the record keeps the prompt's words (full or masked redaction)")
    segments: list[PromptSegment]
    players: list[PlayerView]
    top_terms: list[TermView]
    salient_total: int
    note: str | None = None
    granularity: str = Field("words", description="players of the (first) game: words, sentences, messages, ...")
    refinement: RefinementView | None = None


class ChainVerification(_Strict):
    ok: bool
    checked: int
    first_bad: int | None
    reason: str | None
    scope: str = "the whole store (every record, not only the period)"


class AuditSettingsSeen(_Strict):
    settings: dict[str, Any]
    audits: int


class ReportSettings(_Strict):
    top_terms: int
    max_flagged: int
    histogram_bins: int
    audit_settings: list[AuditSettingsSeen] = Field(description="distinct audit settings in the period, most used first")


class MethodNote(_Strict):
    name: str
    definition: str


class ReportModel(_Strict):
    """Everything a compliance report shows; the HTML page is a rendering of exactly this."""

    kind: Literal["interaction-auditor.report"] = "interaction-auditor.report"
    schema_version: int = REPORT_SCHEMA_VERSION
    title: str
    generated_at: datetime
    auditor_version: str
    store: StoreInfo
    period: Period
    models: list[ModelIdentity]
    counts: Counts
    distributions: list[Distribution]
    flagged: list[FlaggedAudit]
    flagged_total: int
    chain: ChainVerification
    settings: ReportSettings
    methods: list[MethodNote]


# ------------------------------------------------------------------------------------------------
# Methods: science.md section 3 in plain words
# ------------------------------------------------------------------------------------------------
METHODS: tuple[tuple[str, str], ...] = (
    ("Players and the game",
     "An audited prompt is split into players: words or phrases (at most 16, usually 10). The auditor "
     "asks the model for its confidence in the answer it gave (the log-odds of the answer tokens) on every "
     "one of the 2^n versions of the prompt in which some players are masked (their input embeddings are "
     "replaced by a neutral baseline embedding). The confidence with every player masked is subtracted."),
    ("AND and OR interactions",
     "The 2^n confidences are explained exactly as a sum of interactions. An AND interaction of a set of "
     "players adds its value when all of them are present (the words act together); an OR interaction "
     "adds its value when any of them is present (the words can stand in for each other). A small "
     "correction of at most qthres x |v(N) - v(empty)| per masked version is allowed, and the split is "
     "the one with the smallest total absolute interaction, found by a linear program solved to a "
     "certified optimum (the duality gap is recorded with each audit)."),
    ("Salient interactions",
     "An interaction is salient when its absolute value is at least 5% of the largest one in the same "
     "audit. Reports, flags and the drawings over the prompt use salient interactions."),
    ("Sparsity",
     "The number of salient interactions. Well-trained models explain an answer with a few tens of them "
     "(out of about 2^(n+1) possible); many salient interactions mean a diffuse, hard-to-trust explanation."),
    ("Order profile",
     "For each order m (the number of players in an interaction), the total positive and negative "
     "strength of the salient interactions of that order, divided by |v(N) - v(empty)|."),
    ("Cancellation",
     "2 min(P, Q) / (P + Q), with P and Q the total positive and negative salient strength: 0 when all "
     "interactions push the same way, 1 when they cancel each other out completely."),
    ("Overfitting score",
     "Interactions that generalize have a decay-shaped order profile: most strength at low orders, falling "
     "as more players are involved. Non-generalizable ones spread like noise over all sets of players, so "
     "their strength per order follows the number of such sets, a spindle peaking at middle orders. The "
     "strength per order of all non-zero interactions is fitted as a non-negative mix of a decay shape and "
     "a spindle shape; the score is the spindle share of the mix, from 0 (all decay) to 1 (all spindle). "
     "Over a period, the strength profiles of one model's audits are added up and fitted once, so an audit "
     "whose interactions cancel (much strength, little output: noise-like) weighs by its strength."),
    ("Misattribution score",
     "Players can carry labels: relevant, irrelevant, forbidden (for example gender) or unlabelled. An "
     "interaction that involves an irrelevant or forbidden player is unreliable. The score is the unreliable "
     "salient strength divided by all salient strength. Audits without such labels have no score."),
    ("Faithfulness",
     "How well the explanation reproduces the model: the largest correction used relative to "
     "|v(N) - v(empty)|, and the error of rebuilding all 2^n confidences from the salient interactions only."),
    ("Flags",
     "An audit is flagged when its overfitting or misattribution score is at or above the threshold of the "
     "settings it ran with."),
    ("Cross-model comparison",
     "Two models are compared on the same prompts, players, answer and kind of baseline. Overlap is the share "
     "of one model's salient interactions that are also salient, with the same sign, in the other model (both "
     "directions), shown next to the share that random sets of the same size would reach. The strength-weighted "
     "signed IoU compares the two explanations as distributions of strength. Shared interactions come from the "
     "joint objective of Chen et al. (ICLR 2024): both models are split together, minimising for every set of "
     "players 0.9 x the larger of the two absolute values plus 0.1 x their sum, which favours explanations "
     "that use the same interactions."),
    ("Hash chain",
     "Every stored record carries the hash of the previous record and the SHA-256 hash of its own canonical "
     "JSON. Verification recomputes every hash and link and compares the last record with the stored chain "
     "head, so edited, deleted or reordered records are detected."),
    ("Redaction",
     "Records keep prompts as configured: full text; masked (each player's words replaced by a placeholder "
     "such as [p3:forbidden], the rest of the prompt kept); or hash (only a SHA-256 hash of each text). The "
     "report shows what the record keeps and nothing more."),
)


# ------------------------------------------------------------------------------------------------
# Building
# ------------------------------------------------------------------------------------------------
