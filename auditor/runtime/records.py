"""The audit record: what one audit leaves behind, in the store, the JSONL export and the reports.

Records are pydantic v2 models whose JSON form is canonical and hashable: every free-form dict
(``settings``, ``metrics``, ``cost``, ``players``, ``salient``) is normalised on construction to
plain JSON values (numpy scalars and arrays, tuples, dataclasses and pydantic models are converted;
non-finite floats become ``null`` because JSON has no NaN), and timestamps are aware UTC datetimes
serialised as ISO-8601 with ``Z``. Naive datetimes are taken to be UTC.
``canonical_json(record)`` (sorted keys, no whitespace, UTF-8) is what ``record_hash`` covers.

Redaction (``RedactionMode``), applied by :func:`redact` / :func:`redact_players` before a record
is built, so user text that must not be kept never reaches the store:

- ``full``: the prompt, the answer and each player's text verbatim.
- ``masked``: each player's span in the prompt is replaced by the placeholder ``[p{index}:{label}]``
  (e.g. ``[p3:forbidden]``); all non-player prompt text is kept verbatim, so the record still
  shows the structure of the explanation (which positions interact) without the words that were
  audited. A player's ``text`` becomes its placeholder. Text without players (the answer) is kept
  verbatim: configure ``hash`` when answers may hold personal data.
- ``hash``: every text is replaced by ``"sha256:" + hex`` of its UTF-8 bytes (HMAC-SHA256 when a
  key is given). Unkeyed hashes of short texts (a single word) can be reversed by trying a word
  list: they prove integrity and allow matching, not anonymity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

__all__ = [
    "RECORD_SCHEMA_VERSION",
    "FLAG_REASONS",
    "OUTCOMES",
    "RedactionMode",
    "AuditRecord",
    "redact",
    "redact_players",
    "placeholder",
    "canonical_json",
    "compute_record_hash",
    "utc_now",
    "to_jsonable",
]

RECORD_SCHEMA_VERSION = 1
FLAG_REASONS: tuple[str, ...] = ("overfitting", "misattribution")
OUTCOMES: tuple[str, ...] = ("success", "failed", "timeout", "skipped", "cancelled", "over_budget")
"""``success``; ``failed`` and ``timeout`` (the auditor's own failures, what the error alert
counts); ``skipped`` (nothing to audit, e.g. a prompt with no content words: the caller's input,
not the auditor's fault); ``cancelled`` (accepted but never run: shut down before its turn, or lost
with a killed process and recovered from the write-ahead journal at the next start); ``over_budget``
(the game does not fit a limit: the model's context, the scored-token or memory budget; never
truncated silently)."""
#: Notes a record may carry (fixed strings, so they can be counted).
NOTES: tuple[str, ...] = ("request_id_replaced",)


class RedactionMode(str, Enum):
    full = "full"
    masked = "masked"
    hash = "hash"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def to_jsonable(obj: Any) -> Any:
    """Plain JSON value for ``obj`` (dict keys become str; NaN/inf become None)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, datetime):
        return _iso(_as_utc(obj))
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, BaseModel):
        return to_jsonable(obj.model_dump(mode="json"))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
    if isinstance(obj, Mapping):
        return {str(to_jsonable(k) if not isinstance(k, str) else k): to_jsonable(v) for k, v in obj.items()}
    # numpy / torch scalars and arrays without importing them
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return to_jsonable(obj.tolist())
    if hasattr(obj, "item") and callable(obj.item) and not isinstance(obj, (Sequence, Mapping)):
        return to_jsonable(obj.item())
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
        if isinstance(obj, (set, frozenset)):
            items = sorted(items, key=repr)
        return [to_jsonable(v) for v in items]
    raise TypeError(f"cannot store a value of type {type(obj).__name__} in an audit record")


def _as_utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _iso(dt: datetime) -> str:
    s = dt.isoformat()
    return s[:-6] + "Z" if s.endswith("+00:00") else s


def _sha256_text(text: str, key: bytes | None) -> str:
    data = text.encode("utf-8")
    if key:
        return "sha256:" + hmac.new(key, data, hashlib.sha256).hexdigest()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _get(p: Any, name: str, default: Any = None) -> Any:
    if isinstance(p, Mapping):
        return p.get(name, default)
    return getattr(p, name, default)


def _span(p: Any) -> tuple[int, int]:
    start, end = _get(p, "char_start"), _get(p, "char_end")
    if start is None or end is None:
        span = _get(p, "span")
        if span is None:
            raise ValueError("a player needs char_start/char_end (or span)")
        start, end = span
    return int(start), int(end)


def placeholder(index: int, label: str | None) -> str:
    return f"[p{int(index)}:{label or 'unlabelled'}]"


def redact(text: str | None, players: Sequence[Any] = (), mode: RedactionMode | str = RedactionMode.full,
           *, key: bytes | None = None) -> str | None:
    """``text`` as the record keeps it under ``mode`` (see the module docstring).

    ``players`` are ``auditor.game.players.Player`` objects or dicts with ``index``, ``label`` and
    ``char_start``/``char_end`` (or ``span``) into ``text``; they are used only in ``masked`` mode
    and must not overlap.
    """
    if text is None:
        return None
    mode = RedactionMode(mode)
    if mode is RedactionMode.full:
        return text
    if mode is RedactionMode.hash:
        return _sha256_text(text, key)
    spans = []
    for i, p in enumerate(players):
        start, end = _span(p)
        if not (0 <= start <= end <= len(text)):
            raise ValueError(f"player span {start}:{end} outside the text (length {len(text)})")
        idx = _get(p, "index", i)
        spans.append((start, end, placeholder(idx, _get(p, "label"))))
    spans.sort()
    out, pos = [], 0
    for start, end, ph in spans:
        if start < pos:
            raise ValueError("player spans overlap")
        out.append(text[pos:start])
        out.append(ph)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def redact_players(players: Sequence[Any], mode: RedactionMode | str = RedactionMode.full,
                   *, key: bytes | None = None) -> list[dict[str, Any]]:
    """Players as record dicts: ``index``, ``text`` (redacted per ``mode``), ``label``, ``group``,
    ``char_start``, ``char_end``, and ``token_start``/``token_end`` when known."""
    mode = RedactionMode(mode)
    out = []
    for i, p in enumerate(players):
        start, end = _span(p)
        idx = int(_get(p, "index", i))
        label = _get(p, "label") or "unlabelled"
        text = _get(p, "text") or ""
        if mode is RedactionMode.masked:
            text = placeholder(idx, label)
        elif mode is RedactionMode.hash:
            text = _sha256_text(text, key)
        d = {"index": idx, "text": text, "label": str(label), "group": _get(p, "group"),
             "char_start": start, "char_end": end}
        for k in ("token_start", "token_end"):
            v = _get(p, k)
            if v is not None:
                d[k] = int(v)
        if _get(p, "segment_id") is not None:  # coarse players: id and a hash of the text, whatever the mode
            d["segment_id"] = str(_get(p, "segment_id"))
            d["text_sha256"] = _sha256_text(_get(p, "text") or "", key)
        out.append(d)
    return out


class AuditRecord(BaseModel):
    """One audit. Build it with redacted texts (:func:`redact`, :func:`redact_players`); the store
    fills ``prev_hash`` and ``record_hash`` in :meth:`auditor.runtime.store.AuditStore.append`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_enum_values=False)

    schema_version: int = RECORD_SCHEMA_VERSION
    audit_id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1, max_length=128)
    request_id: str = Field(min_length=1, max_length=1024)
    created_at: datetime = Field(default_factory=utc_now)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    model_id: str = ""
    model_revision: str | None = None
    auditor_version: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)
    sampling_reason: str = ""
    sampling_probability: float | None = None
    redaction: RedactionMode = RedactionMode.full
    prompt: str | None = None
    answer: str | None = None
    players: list[dict[str, Any]] = Field(default_factory=list)
    salient: list[dict[str, Any]] = Field(default_factory=list)
    metrics: dict[str, Any] = Field(default_factory=dict)
    flags: list[Literal["overfitting", "misattribution"]] = Field(default_factory=list)
    cost: dict[str, Any] = Field(default_factory=dict)
    outcome: Literal["success", "failed", "timeout", "skipped", "cancelled", "over_budget"] = "success"
    error: str | None = None
    notes: list[Literal["request_id_replaced"]] = Field(default_factory=list)
    prev_hash: str | None = None
    record_hash: str | None = None

    @field_validator("created_at", "started_at", "finished_at", mode="after")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return None if v is None else _as_utc(v)

    @field_validator("settings", "metrics", "cost", mode="before")
    @classmethod
    def _plain_dict(cls, v: Any) -> Any:
        if v is None:
            return {}
        try:
            return to_jsonable(v)
        except TypeError as exc:  # pydantic reports ValueError as a ValidationError
            raise ValueError(str(exc)) from exc

    @field_validator("players", "salient", mode="before")
    @classmethod
    def _plain_list(cls, v: Any) -> Any:
        if v is None:
            return []
        try:
            return [to_jsonable(x) for x in v]
        except TypeError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("flags", mode="before")
    @classmethod
    def _flags(cls, v: Any) -> Any:
        if v is None:
            return []
        # stable order, no duplicates: flags are a set of reasons
        order = {r: i for i, r in enumerate(FLAG_REASONS)}
        return sorted({str(x.value if isinstance(x, Enum) else x) for x in v}, key=lambda r: (order.get(r, len(order)), r))

    @model_serializer(mode="wrap")
    def _drop_empty_notes(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Records without notes serialise (and hash) exactly as before ``notes`` existed, so the
        hash chains of existing stores still verify."""
        data = handler(self)
        if isinstance(data, dict) and not data.get("notes"):
            data.pop("notes", None)
        return data

    @property
    def flagged(self) -> bool:
        return bool(self.flags)

    def hash_payload(self) -> dict[str, Any]:
        """The JSON object that ``record_hash`` covers: the record without ``record_hash``."""
        d = self.model_dump(mode="json")
        d.pop("record_hash", None)
        return d


def canonical_json(obj: Any) -> str:
    """Canonical JSON text: sorted keys, no whitespace, UTF-8, no NaN."""
    if isinstance(obj, AuditRecord):
        obj = obj.model_dump(mode="json")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def compute_record_hash(record: AuditRecord | Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON of the record without ``record_hash``."""
    if isinstance(record, AuditRecord):
        payload = record.hash_payload()
    else:
        payload = {k: v for k, v in record.items() if k != "record_hash"}
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()


def flags_for(metrics: Any, overfitting_threshold: float, misattribution_threshold: float) -> list[str]:
    """Flag reasons of an audit: a score at or above its threshold (a missing score never flags)."""

    def get(name: str) -> float | None:
        value = metrics.get(name) if isinstance(metrics, dict) else getattr(metrics, name, None)
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError):
            return None

    flags = []
    overfitting = get("overfitting")
    if overfitting is not None and overfitting == overfitting and overfitting >= overfitting_threshold:
        flags.append("overfitting")
    misattribution = get("misattribution")
    if misattribution is not None and misattribution == misattribution and misattribution >= misattribution_threshold:
        flags.append("misattribution")
    return flags
