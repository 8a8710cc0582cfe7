"""The real audit runner: players -> masked scores -> AND-OR interactions -> metrics -> record.

:class:`ModelJobRunner` is what the auditor service gives its :class:`~auditor.runtime.worker.AuditWorker`:
one loaded model, the settings, and the recipe of one audit (``auditor.audit.audit_prompt``, then
``auditor.metrics.audit_metrics.compute_metrics``), turned into an :class:`~auditor.runtime.records.AuditRecord`
with the prompt redacted as configured and the flags of the configured thresholds.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any, Literal

from auditor.runtime.failures import AuditCancelled, AuditOverBudget, AuditSkipped, AuditStageError, classify_stage
from auditor.runtime.jobs import AuditJob
from auditor.runtime.records import AuditRecord, flags_for, utc_now

__all__ = ["ModelJobRunner"]


class ModelJobRunner:
    """Runs one audit with the library (``audit.audit_prompt``, then ``metrics.compute_metrics``)
    and builds its record.

    Failures are tagged with their ``errors_total`` stage (players, scoring, solver from the
    traceback; metrics; store for redaction). Cancellation (the worker's time budget) is checked
    after every masked forward call (the scorer's progress callback) and between steps.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        settings: Any,
        *,
        model_id: str,
        model_revision: str | None = None,
        version: str | None = None,
        redaction_key: bytes | None = None,
    ) -> None:
        from auditor import __version__

        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.model_id = model_id
        self.model_revision = model_revision
        self.version = version or __version__
        self.redaction_key = redaction_key

    def warm_up(self) -> None:
        """Compile the solver's CPU kernel before the first job (about 15 s on a cold cache)."""
        from auditor.engine import simplex

        simplex.warm_up()

    # ---- helpers --------------------------------------------------------------------------------
    def _base_record(self, job: AuditJob) -> dict[str, Any]:
        return {
            "request_id": job.request_id,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "auditor_version": self.version,
            "settings": {**self.settings.audit_parameters(), "model_label": self.settings.metrics_model},
            "sampling_reason": job.sampling_reason,
            "sampling_probability": job.sampling_probability,
            "redaction": self.settings.redaction,
            "notes": ["request_id_replaced"] if job.request_id_replaced else [],
        }

    @staticmethod
    def _checkpoint(cancel: threading.Event, where: str) -> None:
        if cancel.is_set():
            raise AuditCancelled(f"time budget exhausted {where}")

    # ---- Engine interface -----------------------------------------------------------------------
    def run(self, job: AuditJob, cancel: threading.Event) -> AuditRecord:
        from auditor.game.planning import OverBudgetError
        from auditor.game.players import NoPlayersError, PlayerError
        from auditor.runtime.records import redact, redact_players

        s = self.settings
        started_at = utc_now()
        t0 = time.perf_counter()

        def progress(done: int, total: int) -> None:
            if cancel.is_set():
                raise AuditCancelled("time budget exhausted while scoring")

        try:
            specs = [h.to_spec() for h in job.spans] if job.spans else "auto"
        except (PlayerError, ValueError) as e:
            raise AuditStageError("players", e) from e
        answer: Any = list(job.answer_ids) if job.answer_ids else job.answer
        messages = [m.model_dump() for m in job.messages] if job.messages is not None else None
        try:
            from auditor.audit import audit_prompt

            result = audit_prompt(
                self.model,
                self.tokenizer,
                prompt=job.prompt,
                messages=messages,
                answer=answer,
                players=specs,
                n_players=s.n_players,
                qthres=s.qthres,
                mode=s.mode,
                max_answer_tokens=s.answer_tokens,
                baseline=None if s.baseline == "auto" else s.baseline,
                progress=progress,
                # the job's granularity wins; caller spans are word players, whatever the setting
                granularity=None if job.spans else (
                    job.granularity or ("segments" if job.segments else s.granularity)),
                segments=[g.to_spec() for g in job.segments] or None,
                system=s.system_players,
                refine=s.refine_players,
                max_scored_tokens=s.max_scored_tokens,
                memory_budget=None if s.memory_budget_mb is None else s.memory_budget_mb * 2**20,
                strict_memory=s.memory_budget_mb is not None,
            )
        except AuditCancelled:
            raise
        except OverBudgetError as e:
            raise AuditOverBudget(f"over budget: {e}") from e
        except NoPlayersError as e:
            raise AuditSkipped(f"players: {e}") from e
        except PlayerError as e:
            raise AuditStageError("players", e) from e
        except Exception as e:  # the stage (players, scoring, solver) from the traceback
            raise AuditStageError(classify_stage(e, "scoring"), e) from e
        game, interactions = result.game, result.interactions
        self._checkpoint(cancel, "after solving")

        labels = [p.label for p in game.players]
        labelled = any(label != "unlabelled" for label in labels)
        try:
            from auditor.metrics.audit_metrics import compute_metrics

            metrics = compute_metrics(interactions, labels if labelled else None,
                                      salient_threshold=s.salient_threshold)
            metrics_dict = metrics.model_dump(mode="json") if hasattr(metrics, "model_dump") else dict(metrics)
        except Exception as e:
            raise AuditStageError("metrics", e) from e
        metrics_dict["certificate"] = {
            "objective": interactions.objective,
            "dual_bound": interactions.dual_bound,
            "gap": interactions.gap,
            "iterations": interactions.iterations,
            "solve_seconds": interactions.solve_seconds,
            "tau": interactions.tau,
        }
        metrics_dict["v_full"] = game.raw_full
        metrics_dict["v_empty"] = game.raw_empty
        metrics_dict["baseline"] = game.baseline_kind
        metrics_dict["n_players"] = game.n
        metrics_dict["granularity"] = result.granularity
        try:
            refinement = self._refinement(result, s)
        except Exception as e:
            raise AuditStageError("metrics", e) from e
        if refinement is not None:
            metrics_dict["refinement"] = refinement

        salient = []
        for term in interactions.salient(s.salient_threshold)[:512]:
            d = term.to_dict()
            d["strength"] = abs(float(term.value))
            salient.append(d)
        flags = flags_for(metrics_dict, s.overfitting_threshold, s.misattribution_threshold)
        try:
            prompt_text = redact(game.prompt_text, game.players, s.redaction, key=self.redaction_key)
            answer_text = redact(game.answer_text, (), s.redaction, key=self.redaction_key)
            players = redact_players(game.players, s.redaction, key=self.redaction_key)
        except Exception as e:
            raise AuditStageError("store", e) from e
        cost = game.cost.to_dict()
        cost.update(
            {
                "seconds": time.perf_counter() - t0,
                "states": 1 << game.n,
                "answer_tokens": len(game.answer_ids),
            }
        )
        if result.fine is not None:  # both games: what the budget and the dashboards count
            fine_cost = result.fine.game.cost
            cost["refinement"] = {"forward_passes": fine_cost.forward_passes,
                                  "tokens_computed": fine_cost.tokens_computed, "states": 1 << result.fine.game.n}
            cost["forward_passes"] = int(cost.get("forward_passes", 0)) + fine_cost.forward_passes
            cost["tokens_computed"] = int(cost.get("tokens_computed", 0)) + fine_cost.tokens_computed
        return AuditRecord(
            **self._base_record(job),
            started_at=started_at,
            finished_at=utc_now(),
            prompt=prompt_text,
            answer=answer_text,
            players=players,
            salient=salient,
            metrics=metrics_dict,
            flags=flags,
            cost=cost,
            outcome="success",
        )

    def _refinement(self, result: Any, s: Any) -> dict[str, Any] | None:
        """The second (word) level of a coarse-to-fine audit: its players (redacted as the record's
        players), salient terms and misattribution (labels inherited from the coarse players)."""
        from auditor.metrics.audit_metrics import compute_metrics
        from auditor.runtime.records import redact_players

        if result.fine is None and result.refine_note is None:
            return None
        out: dict[str, Any] = {"refined_players": list(result.refined), "note": result.refine_note}
        if result.fine is None:
            return out
        fine, inter = result.fine.game, result.fine.interactions
        labels = [p.label for p in fine.players]
        labelled = any(label != "unlabelled" for label in labels)
        metrics = compute_metrics(inter, labels if labelled else None, salient_threshold=s.salient_threshold)
        m = metrics.model_dump(mode="json") if hasattr(metrics, "model_dump") else dict(metrics)
        out.update({
            "granularity": result.fine.granularity,
            "n_players": fine.n,
            "players": redact_players(fine.players, s.redaction, key=self.redaction_key),
            "salient": [{**t.to_dict(), "strength": abs(float(t.value))}
                        for t in inter.salient(s.salient_threshold)[:512]],
            "sparsity": m.get("sparsity"),
            "misattribution": m.get("misattribution"),
            "v_full": fine.raw_full,
            "v_empty": fine.raw_empty,
            "certificate": {"gap": inter.gap, "tau": inter.tau, "objective": inter.objective},
        })
        return out

    def failure_record(
        self,
        job: AuditJob,
        outcome: Literal["failed", "timeout", "skipped", "cancelled", "over_budget"],
        error: str,
        started_at: datetime,
        finished_at: datetime,
    ) -> AuditRecord:
        from auditor.runtime.records import redact

        s = self.settings
        try:
            prompt = job.prompt if job.prompt is not None else "\n".join(m.content for m in job.messages or [])
            # no players are known for a failed audit: masked mode keeps no prompt text at all
            kept = redact(prompt, (), s.redaction, key=self.redaction_key) if s.redaction != "masked" else None
            answer = redact(job.answer, (), s.redaction, key=self.redaction_key) if job.answer is not None else None
        except Exception:  # noqa: BLE001 - a failure record must always be buildable
            kept, answer = None, None
        return AuditRecord(
            **self._base_record(job),
            started_at=started_at,
            finished_at=finished_at,
            prompt=kept,
            answer=answer,
            outcome=outcome,
            error=error,
        )
