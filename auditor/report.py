"""Compliance reports over the audit store: one pydantic schema, rendered as JSON or as HTML.

``build_report(store, since, until, model=None) -> ReportModel`` reads the audit records of a period
from an :class:`auditor.store.AuditStore` (or a store URL) and gathers what a compliance reader needs:

- the period and the model identities (ids, revisions, auditor versions, dtypes) seen in it;
- audit counts by sampling reason and outcome (the reasons let a reader weight the sample back
  to the population of requests);
- distributions of the overfitting, misattribution and sparsity scores (histograms and summary
  statistics), and per model the window overfitting score (strength profiles added up, then fitted);
- the flagged audits with their strongest interactions, each drawn over the prompt's words as the
  record keeps them (redaction ``full``: the words; ``masked``: the ``[p3:forbidden]``
  placeholders; ``hash``: no words at all, players by index and label only);
- the hash-chain verification of the whole store;
- the settings the audits were run with and the report's own settings;
- a methods section: science.md section 3 in plain words.

``render_html(report) -> str`` draws a self-contained page (inline CSS, inline SVG charts, no
scripts, no external assets); ``render_json(report) -> str`` writes the same content, which
``ReportModel.model_validate_json`` reads back. Nothing here imports torch or the solver: a report
is a pure function of the stored records.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from auditor import __version__
from auditor.records import AuditRecord, RedactionMode

__all__ = [
    "REPORT_SCHEMA_VERSION",
    "ReportModel",
    "build_report",
    "render_html",
    "render_json",
    "parse_time",
    "METHODS",
]

REPORT_SCHEMA_VERSION = 1
DEFAULT_TOP_TERMS = 5
DEFAULT_MAX_FLAGGED = 50
DEFAULT_BINS = 20
_PAGE = 1000


# ------------------------------------------------------------------------------------------------
# The schema
# ------------------------------------------------------------------------------------------------
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


class TermView(_Strict):
    kind: Literal["and", "or"]
    players: list[int]
    words: list[str]
    order: int
    value: float
    strength: float
    share: float = Field(description="strength / total salient strength of the audit")


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
def parse_time(value: datetime | str | float | int | None) -> datetime | None:
    """An aware UTC datetime from a datetime, an ISO-8601 string (``Z`` allowed, date-only allowed)
    or unix seconds; naive values are taken as UTC. Raises ``ValueError`` for unreadable strings and for
    times that leave datetime's range once converted to UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    if isinstance(value, str):
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO-8601 time: {text!r} (e.g. 2025-01-31 or 2025-01-31T12:00:00Z)") from None
    if not isinstance(value, datetime):
        raise TypeError(f"cannot read a time from {type(value).__name__}")
    try:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
        raise ValueError(f"time out of range once converted to UTC: {value.isoformat()}") from None


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "median": None, "p90": None, "min": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p90": float(np.quantile(a, 0.9)),
            "min": float(a.min()), "max": float(a.max())}


def _histogram(values: Sequence[float], lo: float, hi: float, bins: int) -> list[HistogramBin]:
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins, range=(lo, hi))
    return [HistogramBin(lo=float(edges[i]), hi=float(edges[i + 1]), count=int(counts[i])) for i in range(bins)]


def _integer_histogram(values: Sequence[float], max_bins: int) -> list[HistogramBin]:
    top = int(max(values)) if values else 0
    width = max(1, math.ceil((top + 1) / max_bins))
    n_bins = max(1, math.ceil((top + 1) / width))
    counts = Counter(int(v) // width for v in values)
    return [HistogramBin(lo=float(i * width), hi=float((i + 1) * width), count=counts.get(i, 0)) for i in range(n_bins)]


def _most_common(values: Iterable[Any]) -> Any:
    counter = Counter(v for v in values if v is not None)
    return counter.most_common(1)[0][0] if counter else None


_PLACEHOLDER_RE = re.compile(r"\[p(\d+):([a-z]+)\]")


def _segments(record: AuditRecord) -> tuple[list[PromptSegment], str | None]:
    """The stored prompt cut into background text and player spans, per the record's redaction."""
    prompt = record.prompt
    if prompt is None:
        return [], "the record keeps no prompt"
    if record.redaction is RedactionMode.hash:
        return [], "the prompt is stored as a hash: its words are not kept, players are shown by index and label"
    if record.redaction is RedactionMode.masked:
        segments, pos = [], 0
        for match in _PLACEHOLDER_RE.finditer(prompt):
            if match.start() > pos:
                segments.append(PromptSegment(text=prompt[pos:match.start()]))
            segments.append(PromptSegment(text=match.group(0), player=int(match.group(1))))
            pos = match.end()
        if pos < len(prompt):
            segments.append(PromptSegment(text=prompt[pos:]))
        return segments, "masked redaction: the audited words are replaced by placeholders"
    spans = []
    for p in record.players:
        start, end, index = p.get("char_start"), p.get("char_end"), p.get("index")
        if not isinstance(start, int) or not isinstance(end, int) or not 0 <= start < end <= len(prompt):
            return [PromptSegment(text=prompt)], "player positions do not fit the stored prompt"
        if p.get("text") and prompt[start:end] != p["text"]:
            return [PromptSegment(text=prompt)], "player positions do not match the stored prompt"
        spans.append((start, end, int(index)))
    spans.sort()
    segments, pos = [], 0
    for start, end, index in spans:
        if start < pos:
            return [PromptSegment(text=prompt)], "player spans overlap"
        if start > pos:
            segments.append(PromptSegment(text=prompt[pos:start]))
        segments.append(PromptSegment(text=prompt[start:end], player=index))
        pos = end
    if pos < len(prompt):
        segments.append(PromptSegment(text=prompt[pos:]))
    return segments, None


def _player_views(record: AuditRecord) -> list[PlayerView]:
    views = []
    for i, p in enumerate(record.players):
        text = str(p.get("text") or "")
        if record.redaction is RedactionMode.hash and text.startswith("sha256:"):
            text = text[:15] + "…"
        views.append(PlayerView(index=int(p.get("index", i)), text=text, label=str(p.get("label") or "unlabelled"),
                                group=p.get("group")))
    return views


def _term_views(record: AuditRecord, players: Sequence[PlayerView], top: int) -> list[TermView]:
    by_index = {p.index: p for p in players}
    total = sum(abs(_float(t.get("value")) or 0.0) for t in record.salient) or 1.0
    terms = []
    for t in sorted(record.salient, key=lambda t: -abs(_float(t.get("value")) or 0.0))[:top]:
        members = [int(i) for i in t.get("players", [])]
        value = _float(t.get("value")) or 0.0

        def word(i: int) -> str:
            p = by_index.get(i)
            if p is None:
                return f"p{i}"
            return f"p{i}:{p.label}" if record.redaction is RedactionMode.hash else p.text

        terms.append(TermView(kind="or" if t.get("kind") == "or" else "and", players=members,
                              words=[word(i) for i in members], order=len(members), value=value,
                              strength=abs(value), share=abs(value) / total))
    return terms


def _flagged_view(record: AuditRecord, top: int) -> FlaggedAudit:
    segments, note = _segments(record)
    players = _player_views(record)
    sparsity = record.metrics.get("sparsity")
    return FlaggedAudit(
        audit_id=record.audit_id, request_id=record.request_id, created_at=record.created_at,
        model_id=record.model_id, model_revision=record.model_revision, sampling_reason=record.sampling_reason,
        flags=list(record.flags), redaction=record.redaction.value,
        overfitting=_float(record.metrics.get("overfitting")),
        misattribution=_float(record.metrics.get("misattribution")),
        sparsity=int(sparsity) if isinstance(sparsity, (int, float)) else None,
        answer=record.answer, prompt_kept=bool(segments), segments=segments, players=players,
        top_terms=_term_views(record, players, top), salient_total=len(record.salient), note=note,
    )


class _ModelAcc:
    def __init__(self) -> None:
        self.revisions: Counter[str] = Counter()
        self.versions: Counter[str] = Counter()
        self.labels: Counter[str] = Counter()
        self.dtypes: Counter[str] = Counter()
        self.audits = self.successful = self.flagged = 0
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.scores: dict[str, list[float]] = defaultdict(list)
        self.profiles: dict[int, list[np.ndarray]] = defaultdict(list)
        self.strengths: dict[int, list[float | None]] = defaultdict(list)


def _open(store: Any) -> Any:
    if isinstance(store, str) or hasattr(store, "__fspath__"):
        from auditor.store import open_store

        return open_store(store)
    return store


def build_report(
    store: Any,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    model: str | None = None,
    *,
    top_terms: int = DEFAULT_TOP_TERMS,
    max_flagged: int = DEFAULT_MAX_FLAGGED,
    bins: int = DEFAULT_BINS,
    title: str = "Interaction audit report",
    progress: Callable[[int], None] | None = None,
) -> ReportModel:
    """The report of the audits with ``since <= created_at < until`` (optionally of one ``model``).

    ``store`` is an :class:`auditor.store.AuditStore` or a store URL. Records are read page by page,
    so memory holds the aggregates and at most ``max_flagged`` flagged audits (the most recent ones).
    ``progress(records_read)`` is called after each page.
    """
    opened = isinstance(store, str) or hasattr(store, "__fspath__")
    store = _open(store)
    try:
        return _build(store, since, until, model, top_terms=top_terms, max_flagged=max_flagged, bins=bins,
                      title=title, progress=progress)
    finally:
        if opened:
            store.close()


def _build(store: Any, since: Any, until: Any, model: str | None, *, top_terms: int, max_flagged: int, bins: int,
           title: str, progress: Callable[[int], None] | None) -> ReportModel:
    from auditor.metrics import fit_window

    start, end = parse_time(since), parse_time(until)
    if start is not None and end is not None and start >= end:
        raise ValueError(f"empty period: from {start.isoformat()} is not before to {end.isoformat()}")

    by_reason: Counter[str] = Counter()
    by_outcome: Counter[str] = Counter()
    by_model: Counter[str] = Counter()
    by_flag: Counter[str] = Counter()
    table: Counter[tuple[str, str]] = Counter()
    values: dict[str, list[float]] = {"overfitting": [], "misattribution": [], "sparsity": []}
    missing: Counter[str] = Counter()
    thresholds: dict[str, Counter[float]] = {"overfitting": Counter(), "misattribution": Counter()}
    settings_seen: Counter[str] = Counter()
    settings_obj: dict[str, dict[str, Any]] = {}
    models: dict[str, _ModelAcc] = defaultdict(_ModelAcc)
    flagged: list[AuditRecord] = []
    flagged_total = 0
    total = 0
    first_at: datetime | None = None
    last_at: datetime | None = None

    cursor = None
    while True:
        records, cursor = store.query(since=start, until=end, model=model, limit=_PAGE, cursor=cursor)
        for r in records:
            total += 1
            reason = r.sampling_reason or "unspecified"
            by_reason[reason] += 1
            by_outcome[r.outcome] += 1
            by_model[r.model_id] += 1
            table[(reason, r.outcome)] += 1
            for flag in r.flags:
                by_flag[flag] += 1
            first_at = r.created_at if first_at is None or r.created_at < first_at else first_at
            last_at = r.created_at if last_at is None or r.created_at > last_at else last_at
            acc = models[r.model_id]
            acc.audits += 1
            acc.revisions[r.model_revision or "unknown"] += 1
            acc.versions[r.auditor_version or "unknown"] += 1
            if r.settings.get("model_label"):
                acc.labels[str(r.settings["model_label"])] += 1
            if r.settings.get("dtype"):
                acc.dtypes[str(r.settings["dtype"])] += 1
            acc.first = r.created_at if acc.first is None or r.created_at < acc.first else acc.first
            acc.last = r.created_at if acc.last is None or r.created_at > acc.last else acc.last
            key = json.dumps(r.settings, sort_keys=True)
            settings_seen[key] += 1
            settings_obj.setdefault(key, r.settings)
            for name in thresholds:
                t = _float(r.settings.get(f"{name}_threshold"))
                if t is not None:
                    thresholds[name][t] += 1
            if r.flags:
                acc.flagged += 1
                flagged_total += 1
                flagged.append(r)
                if len(flagged) > max_flagged:
                    flagged.pop(0)
            if r.outcome != "success":
                continue
            acc.successful += 1
            for name in values:
                v = _float(r.metrics.get(name))
                if v is None:
                    missing[name] += 1
                else:
                    values[name].append(v)
                    acc.scores[name].append(v)
            fitted = r.metrics.get("overfitting_fit") or {}
            profile = fitted.get("profile")
            if isinstance(profile, list) and profile:
                p = np.asarray([_float(x) or 0.0 for x in profile])
                if p.sum() > 0:
                    acc.profiles[len(p)].append(p / p.sum())
                    acc.strengths[len(p)].append(_float(fitted.get("strength")))
        if progress is not None:
            progress(total)
        if cursor is None:
            break

    def mean(xs: list[float]) -> float | None:
        return float(np.mean(xs)) if xs else None

    identities = []
    for model_id in sorted(models):
        acc = models[model_id]
        window = []
        for n in sorted(acc.profiles):
            # records from before strengths were stored cannot be weighed with the others: unit mass for all
            strengths = acc.strengths[n] if all(w is not None for w in acc.strengths[n]) else None
            fit = fit_window(acc.profiles[n], strengths)
            window.append(WindowOverfitting(n=n, audits=len(acc.profiles[n]), score=fit.score,
                                            decay_weight=fit.decay_weight, spindle_weight=fit.spindle_weight))
        identities.append(ModelIdentity(
            model_id=model_id, revisions=[k for k, _ in acc.revisions.most_common()],
            auditor_versions=[k for k, _ in acc.versions.most_common()],
            labels=[k for k, _ in acc.labels.most_common()], dtypes=[k for k, _ in acc.dtypes.most_common()],
            audits=acc.audits, successful=acc.successful, flagged=acc.flagged, first_at=acc.first, last_at=acc.last,
            mean_overfitting=mean(acc.scores["overfitting"]), mean_misattribution=mean(acc.scores["misattribution"]),
            mean_sparsity=mean(acc.scores["sparsity"]), window_overfitting=window,
        ))

    descriptions = {
        "overfitting": ("Overfitting score", "spindle share of the strength-per-order profile (0 = generalizable, "
                        "1 = noise-like)"),
        "misattribution": ("Misattribution score", "share of salient strength resting on irrelevant or forbidden "
                           "players (audits with such labels only)"),
        "sparsity": ("Sparsity", "number of salient interactions per audit"),
    }
    distributions = []
    for name in ("overfitting", "misattribution", "sparsity"):
        xs = values[name]
        threshold = _most_common(thresholds[name].elements()) if name in thresholds else None
        hist = _integer_histogram(xs, bins) if name == "sparsity" else _histogram(xs, 0.0, 1.0, bins)
        distributions.append(Distribution(
            metric=name, title=descriptions[name][0], description=descriptions[name][1], count=len(xs),
            missing=missing[name], **_stats(xs), threshold=threshold,
            at_or_above_threshold=None if threshold is None else sum(1 for x in xs if x >= threshold),
            bins=hist,
        ))

    chain = store.verify_chain()
    flagged_views = [_flagged_view(r, top_terms) for r in reversed(flagged)]  # most recent first
    return ReportModel(
        title=title,
        generated_at=datetime.now(timezone.utc),
        auditor_version=__version__,
        store=StoreInfo(url=str(getattr(store, "url", "")), records_in_store=int(store.count())),
        period=Period(since=start, until=end, model=model, first_audit=first_at, last_audit=last_at),
        models=identities,
        counts=Counts(
            total=total, flagged=flagged_total, by_reason=dict(by_reason.most_common()),
            by_outcome=dict(by_outcome.most_common()), by_model=dict(by_model.most_common()),
            by_flag=dict(by_flag.most_common()),
            table=[CountRow(sampling_reason=k[0], outcome=k[1], count=c) for k, c in sorted(table.items())],
        ),
        distributions=distributions,
        flagged=flagged_views,
        flagged_total=flagged_total,
        chain=ChainVerification(ok=chain.ok, checked=chain.checked, first_bad=chain.first_bad, reason=chain.reason),
        settings=ReportSettings(
            top_terms=top_terms, max_flagged=max_flagged, histogram_bins=bins,
            audit_settings=[AuditSettingsSeen(settings=settings_obj[k], audits=c) for k, c in settings_seen.most_common()],
        ),
        methods=[MethodNote(name=n, definition=d) for n, d in METHODS],
    )


def render_json(report: ReportModel, indent: int | None = 2) -> str:
    """The report as JSON (``ReportModel.model_validate_json`` reads it back)."""
    return report.model_dump_json(indent=indent)


# ------------------------------------------------------------------------------------------------
# HTML
# ------------------------------------------------------------------------------------------------
_CSS = """
:root{--ink:#1d2330;--muted:#5b6475;--line:#d9dee7;--bg:#f6f7fa;--card:#fff;--pos:#1f6fd1;--neg:#c63b2f;
--ok:#1a7f37;--bad:#b42318;--accent:#5b3cc4}
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 -apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;
color:var(--ink);background:var(--bg)}
main{max-width:1120px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:26px;margin:0 0 4px}
h2{font-size:19px;margin:32px 0 10px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:15px;margin:0 0 6px}
.sub{color:var(--muted);margin:0}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0 0}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:150px}
.card .v{font-size:24px;font-weight:600}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
table{border-collapse:collapse;background:var(--card);width:100%;margin:6px 0}
th,td{border:1px solid var(--line);padding:5px 9px;text-align:left;vertical-align:top}
th{background:#eef1f6;font-weight:600}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;color:#fff}
.badge.ok{background:var(--ok)}.badge.bad{background:var(--bad)}
.badge.flag{background:#9a3412}.badge.and{background:#334155}.badge.or{background:var(--accent)}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:14px}
.chart{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 12px}
.chart svg{width:100%;height:auto}
.chart p{margin:4px 0 0;color:var(--muted);font-size:12px}
.audit{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:12px 0}
.audit .meta{color:var(--muted);font-size:12px}
.prompt{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px;line-height:1.9;
white-space:pre-wrap;word-break:break-word;background:#fafbfc;border:1px solid var(--line);border-radius:6px;
padding:6px 10px;margin:6px 0}
.pl{border-bottom:2px solid #9aa3b2}
.pl.forbidden{border-bottom-color:var(--bad)}.pl.irrelevant{border-bottom-color:#d97706}
.pl.relevant{border-bottom-color:var(--ok)}
mark{border-radius:3px;padding:1px 2px;color:#fff}
mark.pos{background:var(--pos)}mark.neg{background:var(--neg)}
mark.pos.or{background:#dce8fb;color:#0f3f80;border:1.5px dashed var(--pos)}
mark.neg.or{background:#fbe3e0;color:#7d1d14;border:1.5px dashed var(--neg)}
.terms td.prompt-cell{padding:3px 8px}
.terms .prompt{margin:0;border:0;background:none;padding:0}
.bar{display:inline-block;height:9px;border-radius:2px;vertical-align:middle}
.legend span{margin-right:14px;font-size:12px;color:var(--muted)}
.note{color:var(--muted);font-style:italic}
dl.methods dt{font-weight:600;margin-top:10px}
dl.methods dd{margin:2px 0 0 0;color:#2f3747;max-width:900px}
code{font-size:12px;background:#eef1f6;padding:1px 4px;border-radius:3px}
footer{margin-top:36px;color:var(--muted);font-size:12px}
@media print{body{background:#fff}.audit,.chart,.card{break-inside:avoid}}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}f}"


def _when(value: datetime | None) -> str:
    if value is None:
        return "–"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _svg_histogram(dist: Distribution) -> str:
    """An inline SVG bar chart of a distribution with its flag threshold as a dashed line."""
    w, h, left, right, top, bottom = 330, 200, 40, 18, 22, 34
    pw, ph = w - left - right, h - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="hist" data-metric="{_e(dist.metric)}" '
             f'width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
             f'aria-label="{_e(dist.title)} histogram of {dist.count} audits">']
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafbfc" stroke="#d9dee7"/>')
    if not dist.bins or dist.count == 0:
        parts.append(f'<text x="{left + pw / 2}" y="{top + ph / 2}" text-anchor="middle" fill="#5b6475" '
                     f'font-size="13">no data in this period</text></svg>')
        return "".join(parts)
    lo, hi = dist.bins[0].lo, dist.bins[-1].hi
    peak = max(b.count for b in dist.bins) or 1

    def x(v: float) -> float:
        return left + (v - lo) / (hi - lo) * pw

    for step in (0.25, 0.5, 0.75, 1.0):  # horizontal grid
        y = top + ph - step * ph
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eceff4"/>')
    for b in dist.bins:
        if b.count == 0:
            continue
        bh = b.count / peak * ph
        parts.append(f'<rect class="bin" x="{x(b.lo) + 0.5:.1f}" y="{top + ph - bh:.1f}" '
                     f'width="{max(x(b.hi) - x(b.lo) - 1, 1):.1f}" height="{bh:.1f}" fill="#4f7cc9">'
                     f'<title>{_fmt(b.lo, 2)}–{_fmt(b.hi, 2)}: {b.count}</title></rect>')
    if dist.threshold is not None and lo <= dist.threshold <= hi:
        tx = x(dist.threshold)
        parts.append(f'<line class="threshold" x1="{tx:.1f}" x2="{tx:.1f}" y1="{top}" y2="{top + ph}" '
                     f'stroke="#b42318" stroke-width="2" stroke-dasharray="5 3"/>')
        anchor = "end" if tx > left + pw * 0.7 else ("start" if tx < left + pw * 0.3 else "middle")
        parts.append(f'<text x="{tx:.1f}" y="{top - 6}" text-anchor="{anchor}" font-size="11" '
                     f'fill="#b42318">flag ≥ {_fmt(dist.threshold, 2)}</text>')
    # axes labels
    integer = dist.metric == "sparsity"
    ticks = np.arange(lo, hi + 1e-9, max(1, math.ceil((hi - lo) / 5))) if integer else np.linspace(lo, hi, 5)
    width = dist.bins[0].hi - dist.bins[0].lo
    centre = width / 2 if integer and width == 1 else 0.0  # one integer per bar: label the bar's middle
    for v in ticks:
        if centre and v >= hi:
            continue
        label = f"{v:.0f}" if integer else f"{v:.2f}"
        parts.append(f'<text x="{x(float(v) + centre):.1f}" y="{top + ph + 14}" text-anchor="middle" font-size="10.5" '
                     f'fill="#5b6475">{label}</text>')
    parts.append(f'<text x="{left - 5}" y="{top + 9}" text-anchor="end" font-size="10.5" fill="#5b6475">{peak}</text>')
    parts.append(f'<text x="{left - 5}" y="{top + ph}" text-anchor="end" font-size="10.5" fill="#5b6475">0</text>')
    parts.append(f'<text x="{left + pw / 2}" y="{h - 4}" text-anchor="middle" font-size="11" fill="#1d2330">'
                 f'{_e(dist.title.lower())}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _prompt_html(audit: FlaggedAudit, highlight: TermView | None = None) -> str:
    labels = {p.index: p.label for p in audit.players}
    members = set(highlight.players) if highlight else set()
    out = []
    for seg in audit.segments:
        text = _e(seg.text)
        if seg.player is None:
            out.append(text)
            continue
        label = labels.get(seg.player, "unlabelled")
        if seg.player in members and highlight is not None:
            sign = "pos" if highlight.value > 0 else "neg"
            out.append(f'<mark class="{sign} {highlight.kind}" data-player="{seg.player}" '
                       f'title="player {seg.player} ({_e(label)})">{text}</mark>')
        else:
            out.append(f'<span class="pl {_e(label)}" data-player="{seg.player}" '
                       f'title="player {seg.player} ({_e(label)})">{text}</span>')
    return "".join(out)


def _audit_html(audit: FlaggedAudit) -> str:
    flags = " ".join(f'<span class="badge flag">{_e(f)}</span>' for f in audit.flags)
    parts = [f'<article class="audit" id="audit-{_e(audit.audit_id)}" data-audit-id="{_e(audit.audit_id)}">']
    parts.append(f"<h3>{flags} {_e(audit.model_id)} · {_when(audit.created_at)}</h3>")
    parts.append(f'<div class="meta">audit {_e(audit.audit_id)} · request {_e(audit.request_id)} · sampled: '
                 f'{_e(audit.sampling_reason)} · redaction: {_e(audit.redaction)} · overfitting '
                 f'{_fmt(audit.overfitting)} · misattribution {_fmt(audit.misattribution)} · '
                 f'{audit.sparsity if audit.sparsity is not None else "–"} salient interactions</div>')
    if audit.segments:
        parts.append(f'<div class="prompt" data-role="prompt">{_prompt_html(audit)}</div>')
    if audit.note:
        parts.append(f'<p class="note">{_e(audit.note)}</p>')
    if not audit.segments and audit.players:
        chips = ", ".join(f"p{p.index} <code>{_e(p.text)}</code> ({_e(p.label)})" for p in audit.players)
        parts.append(f"<p>players: {chips}</p>")
    if audit.answer is not None:
        parts.append(f"<p><b>answer</b>: <code>{_e(audit.answer)}</code></p>")
    if audit.top_terms:
        peak = max(t.share for t in audit.top_terms) or 1.0
        parts.append('<table class="terms"><tr><th class="num">#</th><th>kind</th><th>players</th>'
                     '<th class="num">value</th><th>share of salient strength</th>'
                     '<th>drawn over the prompt</th></tr>')
        for rank, t in enumerate(audit.top_terms, 1):
            colour = "#1f6fd1" if t.value > 0 else "#c63b2f"
            joiner = " &amp; " if t.kind == "and" else " | "
            words = joiner.join(f"<code>{_e(w)}</code>" for w in t.words)
            drawn = (f'<div class="prompt">{_prompt_html(audit, t)}</div>' if audit.segments
                     else '<span class="note">prompt not kept</span>')
            parts.append(
                f'<tr class="term" data-kind="{t.kind}" data-players="{",".join(map(str, t.players))}">'
                f'<td class="num">{rank}</td><td><span class="badge {t.kind}">{t.kind.upper()}</span></td>'
                f'<td>{words}</td><td class="num">{t.value:+.3f}</td>'
                f'<td><span class="bar" style="width:{70 * t.share / peak:.0f}px;background:{colour}"></span> '
                f'{t.share:.0%}</td><td class="prompt-cell">{drawn}</td></tr>')
        parts.append("</table>")
        if audit.salient_total > len(audit.top_terms):
            parts.append(f'<p class="note">{len(audit.top_terms)} strongest of {audit.salient_total} salient '
                         f'interactions shown.</p>')
    else:
        parts.append('<p class="note">no salient interactions stored</p>')
    parts.append("</article>")
    return "".join(parts)


def render_html(report: ReportModel) -> str:
    """A self-contained HTML page (inline CSS and SVG; no scripts, no external assets)."""
    r = report
    c = r.counts
    period = f"{_when(r.period.since) if r.period.since else 'first record'} → " \
             f"{_when(r.period.until) if r.period.until else 'now'}"
    success = c.by_outcome.get("success", 0)
    chain_badge = ('<span class="badge ok">verified</span>' if r.chain.ok
                   else '<span class="badge bad">FAILED</span>')
    out = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_e(r.title)} · {_e(period)}</title><style>{_CSS}</style></head><body><main>"]
    out.append(f'<header><h1 id="title">{_e(r.title)}</h1>'
               f'<p class="sub" id="period">Period: <b>{_e(period)}</b>'
               f'{" · model " + _e(r.period.model) if r.period.model else ""} · '
               f'generated {_when(r.generated_at)} by interaction-auditor {_e(r.auditor_version)}</p>'
               f'<p class="sub">Store <code>{_e(r.store.url)}</code> ({r.store.records_in_store} records) · '
               f'audits in the period: {_when(r.period.first_audit)} to {_when(r.period.last_audit)}</p>')
    out.append('<div class="cards">'
               f'<div class="card"><div class="k">audits</div><div class="v" id="total-audits">{c.total}</div></div>'
               f'<div class="card"><div class="k">successful</div><div class="v">{success}</div></div>'
               f'<div class="card"><div class="k">flagged</div><div class="v" id="flagged-count">{c.flagged}</div></div>'
               f'<div class="card"><div class="k">models</div><div class="v">{len(r.models)}</div></div>'
               f'<div class="card"><div class="k">hash chain</div><div class="v">{chain_badge}</div></div>'
               "</div></header>")

    # models
    out.append('<section id="models"><h2>Models</h2><table><tr><th>model</th><th>revision(s)</th>'
               '<th>auditor version(s)</th><th>dtype</th><th class="num">audits</th><th class="num">flagged</th>'
               '<th class="num">mean overfitting</th><th class="num">window overfitting</th>'
               '<th class="num">mean misattribution</th><th class="num">mean sparsity</th><th>first / last audit</th></tr>')
    for m in r.models:
        window = ", ".join(f"{w.score:.3f} (n={w.n}, {w.audits})" for w in m.window_overfitting) or "–"
        out.append(f'<tr class="model"><td><b>{_e(m.model_id)}</b>'
                   f'{"<br><span class=note>label " + _e(", ".join(m.labels)) + "</span>" if m.labels not in ([], [m.model_id]) else ""}</td>'
                   f'<td>{_e(", ".join(m.revisions))}</td><td>{_e(", ".join(m.auditor_versions))}</td>'
                   f'<td>{_e(", ".join(m.dtypes)) or "–"}</td><td class="num">{m.audits}</td>'
                   f'<td class="num">{m.flagged}</td><td class="num">{_fmt(m.mean_overfitting)}</td>'
                   f'<td class="num">{_e(window)}</td><td class="num">{_fmt(m.mean_misattribution)}</td>'
                   f'<td class="num">{_fmt(m.mean_sparsity, 1)}</td>'
                   f'<td>{_when(m.first_at)}<br>{_when(m.last_at)}</td></tr>')
    if not r.models:
        out.append('<tr><td colspan="11" class="note">no audits in this period</td></tr>')
    out.append("</table></section>")

    # counts
    outcomes = sorted(c.by_outcome, key=lambda o: (o != "success", o))
    out.append('<section id="counts"><h2>Audits by sampling reason and outcome</h2><table><tr><th>sampling reason</th>'
               + "".join(f'<th class="num">{_e(o)}</th>' for o in outcomes) + '<th class="num">total</th></tr>')
    cells = {(row.sampling_reason, row.outcome): row.count for row in c.table}
    for reason, n in c.by_reason.items():
        out.append(f'<tr class="reason" data-reason="{_e(reason)}"><td>{_e(reason)}</td>'
                   + "".join(f'<td class="num">{cells.get((reason, o), 0)}</td>' for o in outcomes)
                   + f'<td class="num"><b>{n}</b></td></tr>')
    out.append('<tr><th>all</th>' + "".join(f'<th class="num">{c.by_outcome[o]}</th>' for o in outcomes)
               + f'<th class="num">{c.total}</th></tr></table>')
    if c.by_flag:
        out.append("<p>Flags: " + ", ".join(f"{_e(k)}: <b>{v}</b>" for k, v in c.by_flag.items())
                   + " (an audit can carry both).</p>")
    out.append("</section>")

    # distributions
    out.append('<section id="distributions"><h2>Score distributions</h2><div class="charts">')
    for d in r.distributions:
        thr = "" if d.threshold is None else f" · {d.at_or_above_threshold} at or above the flag threshold {d.threshold:g}"
        miss = f" · {d.missing} without a value" if d.missing else ""
        dg = 1 if d.metric == "sparsity" else 3
        out.append(f'<div class="chart" id="dist-{d.metric}"><h3>{_e(d.title)}</h3>{_svg_histogram(d)}'
                   f'<p>{_e(d.description)}</p><p>{d.count} audits · mean {_fmt(d.mean, dg)} · median '
                   f'{_fmt(d.median, dg)} · p90 {_fmt(d.p90, dg)} · max {_fmt(d.max, dg)}{_e(thr)}{_e(miss)}</p></div>')
    out.append("</div></section>")

    # flagged audits
    shown = len(r.flagged)
    out.append(f'<section id="flagged"><h2>Flagged audits</h2><p>{r.flagged_total} flagged audits in the period'
               f'{f"; the {shown} most recent are shown" if shown < r.flagged_total else ""}. Each row draws one '
               'salient interaction over the prompt as the record keeps it.</p>'
               '<p class="legend"><span><mark class="pos">word</mark> raises the answer\'s confidence</span>'
               '<span><mark class="neg">word</mark> lowers it</span>'
               '<span><mark class="pos or">word</mark> OR interaction (dashed)</span>'
               '<span><span class="pl relevant">relevant</span> / <span class="pl irrelevant">irrelevant</span> / '
               '<span class="pl forbidden">forbidden</span> / <span class="pl">unlabelled</span> player</span></p>')
    for audit in r.flagged:
        out.append(_audit_html(audit))
    if not r.flagged:
        out.append('<p class="note">No flagged audits in this period.</p>')
    out.append("</section>")

    # chain
    ch = r.chain
    out.append(f'<section id="chain"><h2>Hash-chain verification</h2><p data-chain-ok="{str(ch.ok).lower()}">'
               f'{chain_badge} {ch.checked} records checked over {_e(ch.scope)}.'
               + ("" if ch.ok else f" First failing record: <b>{ch.first_bad}</b>; reason: {_e(ch.reason)}.")
               + "</p></section>")

    # settings
    s = r.settings
    out.append(f'<section id="settings"><h2>Settings</h2><p>Report: the {s.top_terms} strongest interactions per '
               f'flagged audit, at most {s.max_flagged} flagged audits, {s.histogram_bins}-bin histograms.</p>')
    if s.audit_settings:
        keys = sorted({k for a in s.audit_settings for k in a.settings})
        out.append("<table><tr><th>setting</th>" + "".join(f'<th class="num">{a.audits} audits</th>'
                                                           for a in s.audit_settings[:6]) + "</tr>")
        for k in keys:
            out.append(f"<tr><td><code>{_e(k)}</code></td>"
                       + "".join(f'<td class="num">{_e(a.settings.get(k, "–"))}</td>' for a in s.audit_settings[:6])
                       + "</tr>")
        out.append("</table>")
        if len(s.audit_settings) > 6:
            out.append(f'<p class="note">{len(s.audit_settings) - 6} further settings combinations are in the JSON '
                       "report.</p>")
    out.append("</section>")

    # methods
    out.append('<section id="methods"><h2>Methods</h2><dl class="methods">')
    for m in r.methods:
        out.append(f"<dt>{_e(m.name)}</dt><dd>{_e(m.definition)}</dd>")
    out.append("</dl></section>")
    out.append(f"<footer>Report schema {r.schema_version} · {_e(r.kind)} · the JSON form of this report "
               "(<code>--format json</code>) holds the same content.</footer></main></body></html>")
    return "\n".join(out)
