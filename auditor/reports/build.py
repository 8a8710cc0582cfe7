"""Compliance reports over the audit store: one pydantic schema, rendered as JSON or as HTML.

``build_report(store, since, until, model=None) -> ReportModel`` reads the audit records of a period
from an :class:`auditor.runtime.store.AuditStore` (or a store URL) and gathers what a compliance reader needs:

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

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from auditor import __version__
from auditor.reports.schema import (
    AuditSettingsSeen,
    ChainVerification,
    CountRow,
    Counts,
    DEFAULT_BINS,
    DEFAULT_MAX_FLAGGED,
    DEFAULT_TOP_TERMS,
    Distribution,
    FlaggedAudit,
    HistogramBin,
    METHODS,
    MethodNote,
    ModelIdentity,
    Period,
    PlayerView,
    PromptSegment,
    RefinementView,
    ReportModel,
    ReportSettings,
    StoreInfo,
    TermView,
    WindowOverfitting,
)
from auditor.runtime.records import AuditRecord, RedactionMode

__all__ = ["build_report", "render_json", "parse_time"]

_PAGE = 1000


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
                                group=p.get("group"), segment_id=p.get("segment_id")))
    return views


def _refinement_view(record: AuditRecord, top: int) -> RefinementView | None:
    """The refinement level kept in ``metrics["refinement"]``, viewed like the first level."""
    fine = record.metrics.get("refinement")
    if not isinstance(fine, dict):
        return None
    level = record.model_copy(update={"players": list(fine.get("players") or []),
                                      "salient": list(fine.get("salient") or [])})
    players = _player_views(level)
    return RefinementView(
        granularity=fine.get("granularity"), refined_players=[int(i) for i in fine.get("refined_players") or []],
        players=players, top_terms=_term_views(level, players, top), salient_total=len(level.salient),
        misattribution=_float(fine.get("misattribution")), note=fine.get("note"),
    )


def _term_views(record: AuditRecord, players: Sequence[PlayerView], top: int, by_id: bool = False) -> list[TermView]:
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
            if by_id and p.segment_id:  # a coarse player reads best by its id (doc-3), not its passage
                return p.segment_id
            return f"p{i}:{p.label}" if record.redaction is RedactionMode.hash else p.text

        terms.append(TermView(kind="or" if t.get("kind") == "or" else "and", players=members,
                              words=[word(i) for i in members], order=len(members), value=value,
                              strength=abs(value), share=abs(value) / total))
    return terms


def _flagged_view(record: AuditRecord, top: int) -> FlaggedAudit:
    segments, note = _segments(record)
    players = _player_views(record)
    sparsity = record.metrics.get("sparsity")
    granularity = str(record.metrics.get("granularity") or "words")
    return FlaggedAudit(
        audit_id=record.audit_id, request_id=record.request_id, created_at=record.created_at,
        model_id=record.model_id, model_revision=record.model_revision, sampling_reason=record.sampling_reason,
        flags=list(record.flags), redaction=record.redaction.value,
        overfitting=_float(record.metrics.get("overfitting")),
        misattribution=_float(record.metrics.get("misattribution")),
        sparsity=int(sparsity) if isinstance(sparsity, (int, float)) else None,
        answer=record.answer, prompt_kept=bool(segments), segments=segments, players=players,
        top_terms=_term_views(record, players, top, by_id=granularity not in ("words", "random", "spans")),
        salient_total=len(record.salient), note=note, granularity=granularity,
        refinement=_refinement_view(record, top),
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
        from auditor.runtime.store import open_store

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

    ``store`` is an :class:`auditor.runtime.store.AuditStore` or a store URL. Records are read page by page,
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
    from auditor.metrics.audit_metrics import fit_window

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
