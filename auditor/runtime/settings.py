"""One settings object for the whole product: :class:`AuditorSettings`.

Every value can be set by an environment variable with the prefix ``AUDITOR_`` (``AUDITOR_MODEL``,
``AUDITOR_SAMPLE_RATE``, ...), by keyword arguments (the services pass ``bentoml serve --arg key=value``
bento arguments this way; they win over the environment), or left at its default. With no
configuration at all the product serves the project's testbed "clean" model on CPU, audits 5% of
traffic in a separate process and keeps the records in ``audits.sqlite`` in the working directory.

The library never reads the environment elsewhere: services build one ``AuditorSettings`` at start
and hand the values on. ``docs/serving.md`` has the table of all settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .store_base import redact_url

__all__ = ["AuditorSettings", "DEFAULT_MODEL", "load_settings"]

#: The value of ``model`` that means "the project's testbed clean model, built on first use".
DEFAULT_MODEL = "testbed:clean"

_LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")
MAX_PLAYERS = 16
#: AUDITOR_* variables read elsewhere (not settings): the testbed's model cache directory.
_OTHER_ENV = frozenset({"AUDITOR_TESTBED_DIR"})


class AuditorSettings(BaseSettings):
    """Configuration of the LLM service, the auditor service and the audit engine."""

    model_config = SettingsConfigDict(
        env_prefix="AUDITOR_",
        env_file=None,
        extra="forbid",
        validate_default=True,
        frozen=True,
        protected_namespaces=(),
        env_parse_none_str="none",
    )

    # ---- the served model ---------------------------------------------------------------------
    model: str = Field(
        DEFAULT_MODEL,
        description="Hugging Face hub id or local directory of a causal LM; 'testbed:clean' (default) "
        "is the project's testbed model, built on first use; 'testbed:<name>' any testbed model.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) of `model`.")
    device: str = Field("cpu", description="Torch device of the LLM service: cpu, cuda, cuda:1, mps, auto.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "float32", description="Weights dtype for both services (audit scores are computed in fp32)."
    )
    auditor_device: str | None = Field(
        None, description="Torch device of the auditor's own model copy; defaults to `device`."
    )
    trust_remote_code: bool = Field(False, description="Passed to transformers when loading `model`.")
    model_label: str | None = Field(
        None,
        description="Bounded `model` label of the Prometheus metrics and of /v1/models; "
        "defaults to a name derived from `model`.",
    )

    # ---- generation limits --------------------------------------------------------------------
    max_new_tokens: int = Field(32, ge=1, description="Default max_new_tokens of a request.")
    max_new_tokens_limit: int = Field(256, ge=1, description="Largest max_new_tokens a request may ask.")
    max_prompt_chars: int = Field(8000, ge=1, description="Longest prompt (characters) accepted.")
    generation_threads: int = Field(
        1, ge=1, le=64, description="Concurrent generations in one LLM worker (each in its own thread)."
    )

    # ---- the audit game -----------------------------------------------------------------------
    n_players: int = Field(10, ge=1, le=MAX_PLAYERS, description="Players per audit (2^n masked states).")
    answer_tokens: int = Field(16, ge=1, le=256, description="K: answer tokens teacher-forced per state.")
    qthres: float = Field(0.04, ge=0.0, le=1.0, description="AND-OR split slack q, as a share of the answer's v(N) - v(empty).")
    mode: Literal["and-or", "and"] = Field("and-or", description="Interaction decomposition.")
    baseline: Literal["auto", "pad", "unk", "mean"] = Field(
        "auto", description="Masking baseline embedding (auto: pad, else unk, else mean embedding)."
    )
    salient_threshold: float = Field(
        0.05, gt=0.0, le=1.0, description="A term is salient when its strength is at least this share of the strongest."
    )
    granularity: Literal["words", "sentences", "messages", "segments", "auto"] = Field(
        "auto", description="Players of an audit without its own: words; sentences; messages (chat turns); "
        "segments (the caller's); auto: passages or messages for long prompts, words for short ones.",
    )
    system_players: Literal["one", "sentences"] = Field(
        "one", description="With messages: the system prompt is one player, or one player per sentence."
    )
    refine_players: int = Field(
        2, ge=0, le=2, description="Coarse players (the most salient) refined into words in a second game; 0: none."
    )
    max_scored_tokens: int | None = Field(
        2**26, ge=1, description="Token positions one audit may push through the model, both games together "
        "(the trie plan is exact before any forward); over it: fewer refinement words, else outcome `over_budget`.",
    )
    memory_budget_mb: int | None = Field(
        None, ge=1, description="Peak memory of one forward call's rows (MiB); rows per call are sized by tokens "
        "to fit it, and one row over it is `over_budget`. Unset: half of what the weights leave of the GPU, "
        "or 2 GiB on CPU.",
    )

    # ---- sampling -----------------------------------------------------------------------------
    sample_rate: float = Field(0.05, ge=0.0, le=1.0, description="Deterministic base audit rate.")
    boost_rate: float = Field(
        1.0, ge=0.0, le=1.0, description="Audit rate of boosted requests (low confidence, flagged, labelled)."
    )
    low_confidence_threshold: float | None = Field(
        0.3,
        ge=0.0,
        le=1.0,
        description="Boost requests whose mean answer-token probability is below this (unset: never).",
    )
    max_audits_per_minute: int | None = Field(
        60, ge=0, description="Per-model cap on sampled audits per minute (forced audits bypass it)."
    )
    sampling_key: SecretStr | None = Field(
        None, description="Optional key of the request-id hash, so callers cannot predict samples."
    )

    # ---- the auditor --------------------------------------------------------------------------
    audit_enabled: bool = Field(True, description="False: never sample or hand off (serving only).")
    auditor_cpu_priority: Literal["idle", "nice", "normal"] = Field(
        "nice",
        description="CPU priority of background audits: nice (AUDITOR_AUDITOR_NICE), idle (Linux SCHED_IDLE: "
        "only CPU time nothing else wants) or normal. Measured side by side in bench/serving.py.",
    )
    auditor_nice: int = Field(
        10, ge=0, le=19, description="Nice value of background audits when the CPU priority is `nice`."
    )
    auditor_threads: int | None = Field(
        None, ge=1, le=256,
        description="Torch CPU threads of the auditor process (unset: the CPUs the LLM process does not use).",
    )
    auditor_workers: int = Field(
        1, ge=1, le=64,
        description="Worker processes of the Auditor service in one `bentoml serve` (each its own model copy, "
        "queue and job pump; with a PostgreSQL store they share one chain and the durable forced-audit jobs).",
    )
    torch_threads: int | None = Field(
        None, ge=1, le=256, description="Torch CPU threads of the LLM process (unset: half the CPUs, at least 1).",
    )
    queue_size: int = Field(32, ge=1, le=100_000, description="Audits waiting in the auditor; more are dropped.")
    audit_timeout_s: float = Field(
        300.0, gt=0.0, description="Per-audit time budget; an audit over it is recorded as `timeout`."
    )
    handoff_timeout_s: float = Field(
        2.0, gt=0.0, le=60.0, description="Timeout of the LLM service's fire-and-forget hand-off."
    )
    shutdown_grace_s: float = Field(
        10.0, ge=0.0, le=3600.0,
        description="On shutdown, queued audits may still run for this long; the rest are stored as `cancelled`.",
    )
    journal_path: str | None = Field(
        None, description="Write-ahead journal of accepted audits (recovered as `cancelled` after a crash); "
        "default: the SQLite store's path + '.jobs'.",
    )
    sync_audit_timeout_s: float | None = Field(
        None, gt=0.0, description="Budget of POST /audit (on demand); defaults to `audit_timeout_s`."
    )
    store_url: str = Field(
        "sqlite:///audits.sqlite",
        description="Audit record store: sqlite:///relative/path, sqlite:////absolute/path, a path, or "
        "postgresql://user[:password]@host:port/db (one hash chain shared by every replica).",
    )
    spool_dir: str | None = Field(
        None, description="Local outage spool of records the store did not take (flushed in order when it "
        "answers again); default: the SQLite store's path + '.spool', else ./audit-spool.",
    )
    spool_max_records: int = Field(
        10_000, ge=1, le=10_000_000, description="Records the outage spool holds; more are dropped (counted).",
    )
    redaction: Literal["full", "masked", "hash"] = Field(
        "masked",
        description="What records keep of prompts and players: `full` text; `masked` (each player's "
        "words replaced by a placeholder such as [p3:forbidden], other text kept); `hash` (sha256 only).",
    )
    redaction_key: SecretStr | None = Field(
        None, description="Key of the HMAC-SHA256 used by `hash` redaction (unkeyed sha256 when unset)."
    )
    auth_token: SecretStr | None = Field(
        None, description="Bearer token required by the record endpoints (/audit, /audits) when set."
    )
    overfitting_threshold: float = Field(0.5, ge=0.0, le=1.0, description="Flag an audit at or above this.")
    misattribution_threshold: float = Field(
        0.3, ge=0.0, le=1.0, description="Flag a labelled audit at or above this."
    )
    fault: Literal["none", "raise", "hang"] = Field(
        "none", description="Fault injection for tests: every audit raises, or hangs past its budget."
    )

    # ---- validation ---------------------------------------------------------------------------
    @field_validator("model")
    @classmethod
    def _model_not_blank(cls, value: str) -> str:
        value = value.strip()
        return value or DEFAULT_MODEL

    @field_validator("device", "auditor_device")
    @classmethod
    def _device_syntax(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not re.fullmatch(r"(auto|cpu|mps|cuda(:\d+)?|xpu(:\d+)?)", value):
            raise ValueError(f"device must be auto, cpu, mps, cuda, cuda:N or xpu[:N], got {value!r}")
        return value

    @field_validator("model_label")
    @classmethod
    def _label_bounded(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not _LABEL_RE.fullmatch(value):
            raise ValueError(
                "model_label must be 1-64 characters of letters, digits and _.:/- starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _limits_consistent(self) -> AuditorSettings:
        if self.max_new_tokens > self.max_new_tokens_limit:
            raise ValueError(
                f"max_new_tokens ({self.max_new_tokens}) exceeds max_new_tokens_limit ({self.max_new_tokens_limit})"
            )
        return self

    # ---- derived values -----------------------------------------------------------------------
    @property
    def metrics_model(self) -> str:
        """The bounded ``model`` label of every metric (never user text)."""
        if self.model_label:
            return self.model_label
        return derive_model_label(self.model)

    @property
    def audit_device(self) -> str:
        return self.auditor_device or self.device

    def cpu_threads(self, cpus: int | None = None) -> tuple[int, int]:
        """Torch CPU threads of (the LLM process, the auditor process).

        Unset values split the available CPUs between the two processes, so they never
        oversubscribe the cores (torch's default, one thread per core in each process, makes both
        spin against each other: measured 11x slower generation of the testbed model on 2 busy
        cores)."""
        if cpus is None:
            import os

            try:
                cpus = len(os.sched_getaffinity(0))
            except (AttributeError, OSError):
                cpus = os.cpu_count() or 1
        llm = self.torch_threads or max(1, cpus // 2)
        auditor = self.auditor_threads or max(1, cpus - llm)
        return llm, auditor

    @property
    def sync_budget_s(self) -> float:
        return self.sync_audit_timeout_s or self.audit_timeout_s

    @property
    def store_path(self) -> Path | None:
        """The SQLite file of ``store_url`` (None for ``sqlite:///:memory:``)."""
        url = self.store_url
        if url.startswith("sqlite:///"):
            rest = url[len("sqlite:///") :]
        elif url.startswith("sqlite://"):
            rest = url[len("sqlite://") :]
        else:
            rest = url
        return None if rest in ("", ":memory:") else Path(rest)

    def redaction_key_bytes(self) -> bytes | None:
        return self.redaction_key.get_secret_value().encode("utf-8") if self.redaction_key is not None else None

    def sampling_key_bytes(self) -> bytes | None:
        return self.sampling_key.get_secret_value().encode("utf-8") if self.sampling_key is not None else None

    def auth_token_value(self) -> str | None:
        return self.auth_token.get_secret_value() if self.auth_token is not None else None

    def public_dict(self) -> dict[str, Any]:
        """Settings as recorded with every audit and shown by health endpoints: no secrets."""
        data = self.model_dump(mode="json", exclude={"auth_token", "sampling_key", "redaction_key"})
        data["store_url"] = redact_url(self.store_url)  # a PostgreSQL URL may carry a password
        data["auth_required"] = self.auth_token is not None
        return data

    def audit_parameters(self) -> dict[str, Any]:
        """The settings that change an audit's numbers (recorded with each audit record)."""
        return {
            "n_players": self.n_players,
            "answer_tokens": self.answer_tokens,
            "qthres": self.qthres,
            "mode": self.mode,
            "baseline": self.baseline,
            "salient_threshold": self.salient_threshold,
            "granularity": self.granularity,
            "system_players": self.system_players,
            "refine_players": self.refine_players,
            "max_scored_tokens": self.max_scored_tokens,
            "memory_budget_mb": self.memory_budget_mb,
            "overfitting_threshold": self.overfitting_threshold,
            "misattribution_threshold": self.misattribution_threshold,
            "redaction": self.redaction,
            "dtype": self.dtype,
        }


def derive_model_label(model: str) -> str:
    """A bounded metric label from a model id or path: ``testbed:clean`` -> ``testbed-clean``,
    ``/models/Qwen2-0.5B/`` -> ``Qwen2-0.5B``, ``org/name`` -> ``org/name``."""
    model = model.strip()
    if model.startswith("testbed:"):
        label = "testbed-" + model.split(":", 1)[1]
    elif model.startswith(("/", ".", "~")) or _is_dir(model):
        label = Path(model.rstrip("/")).name or "model"
    else:
        label = model
    label = re.sub(r"[^A-Za-z0-9_.:/-]", "-", label)
    label = label.lstrip("_.:/-") or "model"
    return label[:64]


def _is_dir(path: str) -> bool:
    try:
        return Path(path).expanduser().is_dir()
    except (OSError, ValueError):  # names too long for the file system, NUL bytes
        return False


def load_settings(overrides: dict[str, Any] | None = None) -> AuditorSettings:
    """Settings from the environment, with ``overrides`` (e.g. bento arguments) taking precedence.

    Unknown override keys are an error naming the key (a typo must not silently do nothing).
    """
    overrides = {k.replace("-", "_"): v for k, v in (overrides or {}).items()}
    unknown = sorted(set(overrides) - set(AuditorSettings.model_fields))
    if unknown:
        raise ValueError(f"unknown auditor setting(s): {', '.join(unknown)}")
    return AuditorSettings(**overrides)


def unknown_env_vars(environ: dict[str, str] | None = None) -> list[str]:
    """``AUDITOR_*`` environment variables that match no setting (likely typos; services warn)."""
    import os

    environ = dict(os.environ) if environ is None else environ
    known = {f"AUDITOR_{name.upper()}" for name in AuditorSettings.model_fields} | _OTHER_ENV
    return sorted(k for k in environ if k.upper().startswith("AUDITOR_") and k.upper() not in known)
