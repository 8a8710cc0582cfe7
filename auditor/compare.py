"""Cross-model comparison of interactions (science.md section 3, "Cross-model comparison").

Two models explain the same prompts with the same players, the same answer text and the same kind
of masking baseline; we then ask how much of their reasoning they share.

Per prompt:

- **Overlap** (both directions): the share of A's salient terms (kind, player set) that are also
  salient in B *with the same sign*, and vice versa. Next to it, the **chance figure**: the same share
  for a random set of A's size drawn uniformly from all admissible terms (the 2^n - 1 AND terms
  and the 2^n - n - 1 OR terms of order >= 2: order-1 OR terms are merged into AND, so the
  2^(n+1) slots hold 2^(n+1) - n - 2 distinct terms), each with a random sign. Its expectation is
  |S_B| / (2 U), U the number of admissible terms; we report that and the 95th percentile of
  ``chance_draws`` seeded draws (the figure an overlap must beat to mean something).
- **Strength-weighted signed IoU** of the salient terms, each model's salient strengths scaled to
  unit total (so models with different output scales compare): sum over terms of
  [same sign] min(|a_t|, |b_t|) divided by sum of max(|a_t|, |b_t|). 1 for identical explanations.
- **Order profiles** side by side (``metrics.compute_metrics(...).order_profile``).
- **Non-generalizable strength**: ``metrics.fit_overfitting`` on each model's strength-per-order
  profile (all non-zero terms): the spindle share. Over all prompts, strength profiles are added up
  and fitted once (``metrics.overfitting_over_window``); the model with the larger share carries more
  spindle-shaped (non-generalizable) strength.
- **Shared interactions** of the joint objective of Chen et al. (ICLR 2024), see
  :func:`joint_extraction`: both games are split together, penalising each set of players by the
  larger of its two absolute values, so both models are pushed onto common terms. The terms salient
  in both models' joint splits are the shared interactions; the strength of a model's salient
  terms not salient in the other is its unshared share (science.md: "the share of interaction
  strength not shared with a reference model").

Same players and answer. Caller spans (character offsets or substrings of the plain prompt) are
used as given for both models. Without spans, the ``auto`` players are chosen by the model whose
answer is scored (A for ``gold`` and ``a``, B for ``b``) and passed to the other model as the same
character spans. The answer is the gold answer (``gold``) or the greedy answer of A or B; when
both tokenizers are identical the answer's token ids are passed, else its text. The baseline kind
(``pad``, ``unk``, ``mean``) resolved for the first model is requested from the second.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import linprog

from auditor.interactions import DEFAULT_SALIENT_THRESHOLD, Interactions, players_of

__all__ = [
    "AnswerSource",
    "PromptItem",
    "CompareInputError",
    "load_prompts",
    "ModelUnderTest",
    "load_side",
    "JointResult",
    "joint_extraction",
    "joint_objective",
    "overlap",
    "chance_overlap",
    "signed_iou",
    "compare_interactions",
    "compare_models",
    "ComparisonReport",
    "JOINT_MAX_PLAYERS",
]

AnswerSource = Literal["gold", "a", "b"]
DEFAULT_ALPHA = 0.1
JOINT_MAX_PLAYERS = 12
"""The joint LP is solved exactly with a generic solver; its cost grows about 8^n (science.md s4)."""


class CompareInputError(ValueError):
    """Bad comparison input (prompt file, spans, answer choice); the message names the problem."""


# ------------------------------------------------------------------------------------------------
# Input
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptItem:
    prompt: str
    answer: str | None = None
    spans: tuple[Any, ...] | None = None
    line: int = 0


def _coerce_span(span: Any, where: str) -> Any:
    from auditor.players import PlayerError, PlayerSpec

    try:
        if isinstance(span, list) and len(span) == 2 and all(isinstance(x, int) for x in span):
            return PlayerSpec(start=span[0], end=span[1])
        if isinstance(span, dict):
            span = dict(span)
            if "char_start" in span or "char_end" in span:
                span["start"], span["end"] = span.pop("char_start", None), span.pop("char_end", None)
        return PlayerSpec.coerce(span if not isinstance(span, list) else tuple(span))
    except (PlayerError, TypeError) as error:
        raise CompareInputError(f"{where}: bad span {span!r}: {error}") from None


def load_prompts(path: str | Path, limit: int | None = None) -> list[PromptItem]:
    """Read a JSONL file of ``{"prompt": str, "answer": optional gold str, "spans": optional list}``.

    A span is a substring, ``[start, end]`` character offsets, or an object with ``text`` or
    ``start``/``end`` (also ``char_start``/``char_end``), and optional ``label``, ``group`` and
    ``occurrence``. Blank lines and lines starting with ``#`` are skipped. Errors name the line.
    """
    path = Path(path)
    items: list[PromptItem] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as error:
                raise CompareInputError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or not obj["prompt"].strip():
                raise CompareInputError(f"{where}: each line needs a non-empty string \"prompt\"")
            unknown = set(obj) - {"prompt", "answer", "spans", "id"}
            if unknown:
                raise CompareInputError(f"{where}: unknown field(s) {sorted(unknown)}; use prompt, answer, spans")
            answer = obj.get("answer")
            if answer is not None and (not isinstance(answer, str) or not answer.strip()):
                raise CompareInputError(f"{where}: \"answer\" must be a non-empty string")
            spans = obj.get("spans")
            if spans is not None:
                if not isinstance(spans, list) or not spans:
                    raise CompareInputError(f"{where}: \"spans\" must be a non-empty list")
                spans = tuple(_coerce_span(s, where) for s in spans)
            items.append(PromptItem(prompt=obj["prompt"], answer=answer, spans=spans, line=number))
            if limit is not None and len(items) >= limit:
                break
    if not items:
        raise CompareInputError(f"{path}: no prompts")
    return items


@dataclass
class ModelUnderTest:
    """A loaded model with what the comparison reports about it."""

    name: str
    model: Any
    tokenizer: Any
    model_id: str
    revision: str | None = None
    path: str | None = None


def load_side(name: str, *, device: str = "cpu", dtype: str = "float32") -> ModelUnderTest:
    """Load a model by path, hub id, ``testbed:NAME`` or a bare testbed name (``clean``, ``overfit-5``).

    Raises :class:`auditor.model_loading.ModelLoadError` with an actionable message.
    """
    from auditor.model_loading import load_model

    source = name
    try:
        from auditor.testbed.models import MODEL_NAMES
    except ImportError:  # pragma: no cover - the testbed ships with the package
        MODEL_NAMES = ()
    if name in MODEL_NAMES and not Path(name).is_dir():
        source = f"testbed:{name}"
    loaded = load_model(source, device=device, dtype=dtype)
    return ModelUnderTest(name=name, model=loaded.model, tokenizer=loaded.tokenizer, model_id=loaded.model_id,
                          revision=loaded.revision, path=loaded.path)


# ------------------------------------------------------------------------------------------------
# The joint LP
# ------------------------------------------------------------------------------------------------
@dataclass
class JointResult:
    """The joint split: per model AND and OR terms (length 2^n, binary order) and the optimum."""

    n: int
    alpha: float
    and_terms: list[np.ndarray]
    or_terms: list[np.ndarray]
    q: list[np.ndarray]
    taus: list[float]
    objective: float
    lp_objective: float
    seconds: float
    iterations: int


def _columns(n: int, mode: str) -> tuple[np.ndarray, np.ndarray]:
    sets = np.arange(1, 1 << n)
    and_sets = sets
    if mode == "and":
        or_sets = np.zeros(0, dtype=np.int64)
    else:
        or_sets = sets[(sets & (sets - 1)) != 0]  # order >= 2: order-1 OR is merged into AND
    return and_sets, or_sets


def joint_objective(and_terms: Sequence[np.ndarray], or_terms: Sequence[np.ndarray], alpha: float = DEFAULT_ALPHA) -> float:
    """sum over kinds and sets S of (1 - alpha) max_i |I_i(S)| + alpha sum_i |I_i(S)|."""
    total = 0.0
    for vectors in (and_terms, or_terms):
        stacked = np.abs(np.stack([np.asarray(v, dtype=np.float64) for v in vectors]))
        total += (1 - alpha) * float(stacked.max(axis=0).sum()) + alpha * float(stacked.sum())
    return total


def _incidence(n: int, mode: str) -> tuple[sp.csc_matrix, np.ndarray, np.ndarray]:
    """One model's constraint columns over its 2^n - 1 matching rows and its sigma row.

    Column c (AND sets first, then OR sets) holds the coefficients of the term I(c): +1 in the
    matching row of every T containing an AND set; for an OR set, -1 in the row of every T inside
    N \\ S's complement (S & T == 0) and -1 in the sigma row.
    """
    size = 1 << n
    and_sets, or_sets = _columns(n, mode)
    rows_t = np.arange(1, size)
    n_rows, n_and = size - 1, len(and_sets)
    t_idx, s_idx = np.nonzero((rows_t[:, None] & and_sets[None, :]) == and_sets[None, :])
    rows, cols, vals = [t_idx], [s_idx], [np.ones(len(t_idx))]
    if len(or_sets):
        t_idx, s_idx = np.nonzero((rows_t[:, None] & or_sets[None, :]) == 0)
        rows += [t_idx, np.full(len(or_sets), n_rows)]
        cols += [n_and + s_idx, n_and + np.arange(len(or_sets))]
        vals += [-np.ones(len(t_idx)), -np.ones(len(or_sets))]
    matrix = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                           shape=(n_rows + 1, n_and + len(or_sets)))
    return matrix, and_sets, or_sets


def _joint_lp(block: sp.csc_matrix, games: Sequence[np.ndarray], taus: Sequence[float], alpha: float) -> Any:
    """Build and solve the joint LP of :func:`joint_extraction` (variables per model: p, n, q, sigma; then m)."""
    models, k = len(games), block.shape[1]
    n_rows = block.shape[0] - 1
    q_part = sp.vstack([-sp.identity(n_rows, format="csc"), sp.csc_matrix((1, n_rows))], format="csc")
    sigma_part = sp.csc_matrix(np.ones((n_rows + 1, 1)))
    model_block = sp.hstack([block, -block, q_part, sigma_part], format="csc")
    width = model_block.shape[1]
    a_eq = sp.hstack([sp.block_diag([model_block] * models, format="csc"),
                      sp.csc_matrix((models * (n_rows + 1), k))], format="csc")
    b_eq = np.concatenate([np.concatenate([g[1:], [0.0]]) for g in games])
    eye = sp.identity(k, format="csc")
    ub_blocks = []  # p_i + n_i - m <= 0 for every model i and column
    for i in range(models):
        left = [sp.csc_matrix((k, width))] * models
        left[i] = sp.hstack([eye, eye, sp.csc_matrix((k, n_rows + 1))], format="csc")
        ub_blocks.append(sp.hstack([*left, -eye], format="csc"))
    a_ub = sp.vstack(ub_blocks, format="csc")
    cost = np.concatenate([np.concatenate([np.full(2 * k, alpha), np.zeros(n_rows + 1)])] * models
                          + [np.full(k, 1.0 - alpha)])
    lower, upper = [], []
    for tau in taus:
        lower += [np.zeros(2 * k), np.full(n_rows, -tau), [-np.inf]]
        upper += [np.full(2 * k, np.inf), np.full(n_rows, tau), [np.inf]]
    lower.append(np.zeros(k))
    upper.append(np.full(k, np.inf))
    bounds = np.stack([np.concatenate(lower), np.concatenate(upper)], axis=1)
    return linprog(cost, A_ub=a_ub, b_ub=np.zeros(models * k), A_eq=a_eq, b_eq=b_eq, bounds=bounds,
                   method="highs-ipm")


def joint_extraction(
    values: Sequence[np.ndarray],
    qthres: float = 0.04,
    alpha: float = DEFAULT_ALPHA,
    *,
    mode: str = "and-or",
    taus: Sequence[float] | None = None,
) -> JointResult:
    """The joint AND-OR split of several games on the same players (Chen et al., ICLR 2024).

    The linear program. For models i = 1..M with games v_i (v_i(empty) = 0, length 2^n), let C be the
    admissible columns: AND sets S != empty, and OR sets with |S| >= 2 (order-1 OR is merged into
    AND). Variables, for every model i and column c: p_i(c), n_i(c) >= 0 (the term is
    I_i(c) = p_i(c) - n_i(c), its absolute value at the optimum p_i(c) + n_i(c)); the corrections
    q_i(T) in [-tau_i, tau_i] for T != empty, tau_i = qthres |v_i(N)|; one free sum sigma_i of the
    OR terms; and for every column c one shared m(c) >= 0 (the largest absolute value over models).

        minimise   (1 - alpha) sum_c m(c) + alpha sum_i sum_c (p_i(c) + n_i(c))
        subject to, for every model i and every T != empty (universal matching with correction):
                   sum_{S in AND, S subset T} I_i(S) + sigma_i - sum_{S in OR, S subset N \\ T} I_i(S)
                       - q_i(T) = v_i(T)
                   sigma_i - sum_{S in OR} I_i(S) = 0
                   p_i(c) + n_i(c) - m(c) <= 0                      for every model i and column c

    i.e. sum_S (1 - alpha) max_i |I_i(S)| + alpha sum_i |I_i(S)| over AND and OR terms, each model's
    split constrained exactly as in ``auditor.solver`` (|q_i| <= tau_i). The OR part uses
    (W b)(T) = sum_{S meets T} b(S) = sum(b) - sum_{S subset N \\ T} b(S), so the equality block has
    O(3^n) non-zeros per model instead of O(4^n) (science.md s4). Values are scaled by one common
    factor (the largest |v_i(T)|) and scaled back; a common factor keeps the max comparable.

    Size and solver. M (2 |C| + 2^n) + |C| variables, M 2^n equality rows and M |C| inequality rows,
    |C| = 2^(n+1) - n - 2: at n = 10 and M = 2 about 14,000 variables, 6,100 rows and 250,000
    non-zeros. The matrices are built sparse and solved by HiGHS' interior-point method with
    crossover (``scipy.optimize.linprog(method="highs-ipm")``): on games of overfitted models the
    optimum has a dense support (over a thousand terms at n = 10), which defeats column generation
    and makes the dual simplex slow; the IPM takes about 0.5 s at n = 8 and 15 s at n = 10 on a
    loaded CPU. ``status == 0`` (optimal) is required, else RuntimeError.

    With alpha = 1 the m(c) carry no cost and the problem separates: the optimum is the sum of the
    models' separate optima. Any tuple of separate optima is feasible here, so the joint optimum is
    at most the joint objective evaluated at the separate optima.
    """
    started = time.perf_counter()
    games = [np.asarray(v, dtype=np.float64) - float(np.asarray(v, dtype=np.float64)[0]) for v in values]
    if not games:
        raise ValueError("joint_extraction needs at least one game")
    size = len(games[0])
    n = size.bit_length() - 1
    if size != 1 << n or any(len(g) != size for g in games):
        raise ValueError("all games must have the same length 2^n")
    if n < 1:
        raise ValueError("a game needs at least one player")
    if n > JOINT_MAX_PLAYERS:
        raise ValueError(f"the joint LP is limited to n <= {JOINT_MAX_PLAYERS} players (got {n})")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    if taus is None:
        taus = [qthres * abs(float(g[-1])) for g in games]
    scale = max(float(np.abs(g).max()) for g in games) or 1.0
    scaled = [g / scale for g in games]
    scaled_taus = [float(t) / scale for t in taus]

    block, and_sets, or_sets = _incidence(n, mode)
    n_and, k = len(and_sets), block.shape[1]
    result = _joint_lp(block, scaled, scaled_taus, alpha)
    if result.status != 0:
        raise RuntimeError(f"the joint LP did not solve: {result.message}")
    x = result.x
    width = 2 * k + (size - 1) + 1
    and_terms, or_terms, qs = [], [], []
    for i in range(len(games)):
        off = i * width
        terms = (x[off:off + k] - x[off + k:off + 2 * k]) * scale
        a = np.zeros(size)
        a[and_sets] = terms[:n_and]
        o = np.zeros(size)
        o[or_sets] = terms[n_and:]
        q = np.zeros(size)
        q[1:] = x[off + 2 * k:off + 2 * k + size - 1] * scale
        and_terms.append(a)
        or_terms.append(o)
        qs.append(q)
    return JointResult(
        n=n, alpha=alpha, and_terms=and_terms, or_terms=or_terms, q=qs, taus=[float(t) for t in taus],
        objective=joint_objective(and_terms, or_terms, alpha), lp_objective=float(result.fun) * scale,
        seconds=time.perf_counter() - started, iterations=int(getattr(result, "nit", 0) or 0),
    )


# ------------------------------------------------------------------------------------------------
# Overlap figures
# ------------------------------------------------------------------------------------------------
Term = tuple[str, int]  # (kind, mask)


def _salient_map(and_terms: np.ndarray, or_terms: np.ndarray, threshold: float) -> dict[Term, float]:
    reference = max(np.abs(and_terms[1:]).max(initial=0.0), np.abs(or_terms[1:]).max(initial=0.0))
    if reference <= 0:
        return {}
    cutoff = threshold * reference
    out: dict[Term, float] = {}
    for kind, vector in (("and", and_terms), ("or", or_terms)):
        for mask in np.flatnonzero(np.abs(vector) >= cutoff):
            if mask:
                out[(kind, int(mask))] = float(vector[mask])
    return out


def salient_map(interactions: Interactions, threshold: float = DEFAULT_SALIENT_THRESHOLD) -> dict[Term, float]:
    """Salient terms of one extraction as {(kind, mask): signed value} (same rule as ``salient()``)."""
    return _salient_map(interactions.and_terms, interactions.or_terms, threshold)


def overlap(a: dict[Term, float], b: dict[Term, float]) -> float | None:
    """Share of a's terms that are in b with the same sign (None when a has no salient term)."""
    if not a:
        return None
    same = sum(1 for t, v in a.items() if t in b and np.sign(b[t]) == np.sign(v))
    return same / len(a)


def admissible_terms(n: int, mode: str = "and-or") -> int:
    """Distinct terms a split can carry: 2^n - 1 AND terms and 2^n - n - 1 OR terms (order >= 2)."""
    return (1 << n) - 1 + (0 if mode == "and" else (1 << n) - n - 1)


def chance_overlap(size: int, b: dict[Term, float], n: int, *, draws: int = 1000, seed: int = 0,
                   mode: str = "and-or") -> tuple[float | None, float | None]:
    """(expected, 95th percentile) overlap of a random signed set of ``size`` terms with ``b``.

    The random set is drawn uniformly without replacement from the admissible terms, each with a
    fair random sign; the expectation is |b| / (2 U) exactly, the percentile from ``draws`` draws.
    """
    if size <= 0:
        return None, None
    universe = admissible_terms(n, mode)
    size = min(size, universe)
    expected = len(b) / (2 * universe)
    if draws <= 0:
        return expected, None
    # index the admissible terms 0..U-1: AND masks 1..2^n-1 first, then OR masks of order >= 2
    and_sets, or_sets = _columns(n, mode)
    signs_b = np.zeros(universe)
    and_pos = {int(m): k for k, m in enumerate(and_sets)}
    or_pos = {int(m): len(and_sets) + k for k, m in enumerate(or_sets)}
    for (kind, mask), value in b.items():
        k = (and_pos if kind == "and" else or_pos).get(mask)
        if k is not None:
            signs_b[k] = np.sign(value)
    rng = np.random.default_rng(seed)
    shares = np.empty(draws)
    for d in range(draws):
        picked = rng.choice(universe, size=size, replace=False)
        signs = rng.choice((-1.0, 1.0), size=size)
        shares[d] = float(np.mean(signs_b[picked] == signs))
    return expected, float(np.quantile(shares, 0.95))


def signed_iou(a: dict[Term, float], b: dict[Term, float]) -> float | None:
    """Strength-weighted signed IoU of two salient sets, each scaled to unit total strength."""
    total_a = sum(abs(v) for v in a.values())
    total_b = sum(abs(v) for v in b.values())
    if total_a <= 0 or total_b <= 0:
        return None
    inter = union = 0.0
    for t in set(a) | set(b):
        x, y = a.get(t, 0.0) / total_a, b.get(t, 0.0) / total_b
        union += max(abs(x), abs(y))
        if x * y > 0:
            inter += min(abs(x), abs(y))
    return inter / union if union > 0 else None


# ------------------------------------------------------------------------------------------------
# The report schema
# ------------------------------------------------------------------------------------------------
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


# ------------------------------------------------------------------------------------------------
# Comparing two extractions, then two models
# ------------------------------------------------------------------------------------------------
def _side(inter: Interactions, labels: Sequence[str] | None, threshold: float, v_full: float) -> SideFigures:
    from auditor.metrics import compute_metrics, fit_overfitting, strength_by_order

    metrics = compute_metrics(inter, labels, salient_threshold=threshold)
    fit = fit_overfitting(strength_by_order(inter))
    return SideFigures(
        salient=metrics.sparsity, v_full=v_full, normaliser=inter.normaliser,
        order_profile_positive=metrics.order_profile.positive, order_profile_negative=metrics.order_profile.negative,
        strength_profile=fit.profile, overfitting=fit.score, misattribution=metrics.misattribution,
        certified_gap=inter.gap,
    )


def compare_interactions(
    a: Interactions,
    b: Interactions,
    *,
    names: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    salient_threshold: float = DEFAULT_SALIENT_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
    joint: bool = True,
    chance_draws: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """All per-prompt comparison figures of two extractions on the same players."""
    if a.n != b.n:
        raise ValueError(f"the two games have different players ({a.n} vs {b.n})")
    names = list(names or a.names or [f"x{i}" for i in range(a.n)])
    labelled = labels is not None and any(label != "unlabelled" for label in labels)
    sa, sb = salient_map(a, salient_threshold), salient_map(b, salient_threshold)
    exp_ab, p95_ab = chance_overlap(len(sa), sb, a.n, draws=chance_draws, seed=seed, mode=a.mode)
    exp_ba, p95_ba = chance_overlap(len(sb), sa, a.n, draws=chance_draws, seed=seed + 1, mode=a.mode)
    out: dict[str, Any] = {
        "a": _side(a, labels if labelled else None, salient_threshold, float(a.values[-1] + a.offset)),
        "b": _side(b, labels if labelled else None, salient_threshold, float(b.values[-1] + b.offset)),
        "overlap_a_in_b": overlap(sa, sb), "overlap_b_in_a": overlap(sb, sa),
        "chance_a_in_b": exp_ab, "chance_b_in_a": exp_ba, "chance_p95_a_in_b": p95_ab, "chance_p95_b_in_a": p95_ba,
        "iou": signed_iou(sa, sb), "joint": None,
    }
    if joint:
        result = joint_extraction([a.values, b.values], qthres=a.qthres, alpha=alpha, mode=a.mode,
                                  taus=[a.tau, b.tau])
        ja = _salient_map(result.and_terms[0], result.or_terms[0], salient_threshold)
        jb = _salient_map(result.and_terms[1], result.or_terms[1], salient_threshold)
        shared = []
        for term in sorted(set(ja) & set(jb), key=lambda t: -(abs(ja[t]) + abs(jb[t]))):
            members = players_of(term[1])
            shared.append(SharedTerm(kind=term[0], players=list(members), words=[names[i] for i in members],
                                     order=len(members), value_a=ja[term], value_b=jb[term],
                                     same_sign=bool(np.sign(ja[term]) == np.sign(jb[term]))))

        def unshared(mine: dict[Term, float], other: dict[Term, float]) -> float | None:
            total = sum(abs(v) for v in mine.values())
            return sum(abs(v) for t, v in mine.items() if t not in other) / total if total > 0 else None

        out["joint"] = JointSummary(
            alpha=alpha, objective=result.objective,
            separate_objective=joint_objective([a.and_terms, b.and_terms], [a.or_terms, b.or_terms], alpha),
            salient_a=len(ja), salient_b=len(jb), shared=shared,
            shared_same_sign=sum(1 for s in shared if s.same_sign),
            unshared_share_a=unshared(ja, jb), unshared_share_b=unshared(jb, ja), seconds=result.seconds,
        )
    return out


def _same_tokenizer(a: Any, b: Any) -> bool:
    if a is b:
        return True
    try:
        return a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    except AttributeError:
        return False


def _audit_pair(first: ModelUnderTest, second: ModelUnderTest, item: PromptItem, answer: Any, *, n_players: int,
                qthres: float, max_answer_tokens: int, baseline: str | None, seed: int,
                say: Callable[[str], None]) -> tuple[Any, Any]:
    """Audit ``first`` (choosing players and, for answer None, the answer), then ``second`` on the same."""
    from auditor.audit import audit_prompt
    from auditor.players import PlayerSpec

    players: Any = list(item.spans) if item.spans else "auto"
    say(f"auditing {first.name}")
    r1 = audit_prompt(first.model, first.tokenizer, prompt=item.prompt, answer=answer, players=players,
                      n_players=n_players, qthres=qthres, max_answer_tokens=max_answer_tokens, baseline=baseline,
                      seed=seed)
    g1 = r1.game
    specs = [PlayerSpec(start=p.char_start, end=p.char_end, label=p.label, group=p.group) for p in g1.players]
    answer2: Any = list(g1.answer_ids) if _same_tokenizer(first.tokenizer, second.tokenizer) else g1.answer_text
    kind = g1.baseline_kind if g1.baseline_kind in ("pad", "unk", "mean") else baseline
    say(f"auditing {second.name}")
    r2 = audit_prompt(second.model, second.tokenizer, prompt=item.prompt, answer=answer2, players=specs,
                      n_players=n_players, qthres=qthres, max_answer_tokens=max_answer_tokens, baseline=kind,
                      seed=seed)
    g2 = r2.game
    if [(p.char_start, p.char_end) for p in g2.players] != [(p.char_start, p.char_end) for p in g1.players]:
        raise CompareInputError(
            f"line {item.line}: the two tokenizers do not cut the players the same way "
            f"({[p.text for p in g1.players]} vs {[p.text for p in g2.players]}); give spans on word boundaries")
    return r1, r2


def compare_models(
    model_a: ModelUnderTest,
    model_b: ModelUnderTest,
    items: Sequence[PromptItem],
    *,
    answer: AnswerSource = "gold",
    n_players: int = 10,
    qthres: float = 0.04,
    alpha: float = DEFAULT_ALPHA,
    salient_threshold: float = DEFAULT_SALIENT_THRESHOLD,
    max_answer_tokens: int = 16,
    baseline: str | None = None,
    joint: bool = True,
    chance_draws: int = 1000,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    phase: Callable[[str], None] | None = None,
) -> ComparisonReport:
    """Audit both models on every prompt (same players, answer and baseline kind) and compare.

    ``progress(done, total)`` is called after each prompt, ``phase(text)`` when a step starts
    (auditing A, auditing B, comparing / joint LP), for progress bars.
    """
    from auditor.metrics import fit_overfitting

    if answer not in ("gold", "a", "b"):
        raise CompareInputError(f"unknown answer source {answer!r}; use gold, a or b")
    if answer == "gold":
        missing = [item.line for item in items if item.answer is None]
        if missing:
            raise CompareInputError(f"--answer gold needs an \"answer\" on every line; missing on line(s) {missing[:10]}")
    if joint and n_players > JOINT_MAX_PLAYERS:
        raise CompareInputError(f"the joint LP is limited to {JOINT_MAX_PLAYERS} players; lower --n or skip it")
    prompts: list[PromptComparison] = []
    results_a: list[Interactions] = []
    results_b: list[Interactions] = []
    for index, item in enumerate(items):
        def say(text: str, index: int = index) -> None:
            if phase is not None:
                phase(f"prompt {index + 1}/{len(items)}: {text}")

        if answer == "b":
            rb, ra = _audit_pair(model_b, model_a, item, None, n_players=n_players, qthres=qthres,
                                 max_answer_tokens=max_answer_tokens, baseline=baseline, seed=seed, say=say)
        else:
            ra, rb = _audit_pair(model_a, model_b, item, item.answer if answer == "gold" else None,
                                 n_players=n_players, qthres=qthres, max_answer_tokens=max_answer_tokens,
                                 baseline=baseline, seed=seed, say=say)
        say("comparing" + (" (joint LP)" if joint else ""))
        ga = ra.game
        labels = [p.label for p in ga.players]
        figures = compare_interactions(ra.interactions, rb.interactions, names=[p.text for p in ga.players],
                                       labels=labels, salient_threshold=salient_threshold, alpha=alpha, joint=joint,
                                       chance_draws=chance_draws, seed=seed + 2 * index)
        figures["a"].v_full = ga.raw_full
        figures["b"].v_full = rb.game.raw_full
        source = ga if answer != "b" else rb.game
        prompts.append(PromptComparison(
            index=index, line=item.line, prompt=item.prompt, answer=source.answer_text, answer_source=answer,
            players=[p.text for p in ga.players], labels=labels, n=ga.n, baseline=ga.baseline_kind, **figures,
        ))
        results_a.append(ra.interactions)
        results_b.append(rb.interactions)
        if progress is not None:
            progress(index + 1, len(items))

    def mean(xs: Sequence[float | None]) -> float | None:
        vals = [x for x in xs if x is not None]
        return float(np.mean(vals)) if vals else None

    def window(results: Sequence[Interactions]) -> float | None:
        from auditor.metrics import overfitting_over_window, strength_by_order

        if not any(strength_by_order(r).sum() > 0 for r in results):
            return None
        return overfitting_over_window(results).score

    def profile(side: str, sign: str) -> list[float]:
        width = max((p.n for p in prompts), default=0)
        acc = np.zeros(width)
        for p in prompts:
            values = getattr(getattr(p, side), f"order_profile_{sign}")
            acc[:len(values)] += values
        return (acc / max(len(prompts), 1)).tolist()

    def summary(side: ModelUnderTest, key: str, results: Sequence[Interactions]) -> ModelSummary:
        return ModelSummary(
            name=side.name, model_id=side.model_id, revision=side.revision, path=side.path,
            window_overfitting=window(results),
            mean_overfitting=mean([getattr(p, key).overfitting for p in prompts]),
            mean_salient=mean([getattr(p, key).salient for p in prompts]),
            order_profile_positive=profile(key, "positive"), order_profile_negative=profile(key, "negative"),
            mean_unshared_share=mean([getattr(p.joint, f"unshared_share_{key}") for p in prompts if p.joint]),
        )

    sa, sb = summary(model_a, "a", results_a), summary(model_b, "b", results_b)
    if sa.window_overfitting is None or sb.window_overfitting is None:
        verdict, margin = None, None
    else:
        margin = sb.window_overfitting - sa.window_overfitting
        verdict = "tie" if abs(margin) < 1e-9 else ("b" if margin > 0 else "a")
    aggregate = Aggregate(
        prompts=len(prompts),
        overlap_a_in_b=mean([p.overlap_a_in_b for p in prompts]), overlap_b_in_a=mean([p.overlap_b_in_a for p in prompts]),
        chance_a_in_b=mean([p.chance_a_in_b for p in prompts]), chance_b_in_a=mean([p.chance_b_in_a for p in prompts]),
        iou=mean([p.iou for p in prompts]), more_non_generalizable=verdict, spindle_margin=margin,
        prompts_b_more_spindle=sum(1 for p in prompts if p.b.overfitting > p.a.overfitting),
        mean_shared=mean([len(p.joint.shared) for p in prompts if p.joint]),
    )
    settings = CompareSettings(
        answer=answer, n_players=n_players, qthres=qthres, alpha=alpha, salient_threshold=salient_threshold,
        baseline=baseline or "auto", max_answer_tokens=max_answer_tokens, chance_draws=chance_draws, seed=seed,
        joint=joint,
    )
    return ComparisonReport(model_a=sa, model_b=sb, settings=settings, aggregate=aggregate, prompts=prompts)
