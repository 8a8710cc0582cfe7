"""The few lines an LLM service needs to be audited: sample after the answer, hand off, never wait.

Used by this project's ``service.llm:LLM`` and meant for any BentoML LLM service (transformers,
vLLM, ...)::

    import bentoml
    from service.auditor import Auditor
    from service.hook import AuditHook

    @bentoml.service
    class MyLLM:
        auditor = bentoml.depends(Auditor)

        def __init__(self):
            self.audit = AuditHook()                    # settings from AUDITOR_* variables

        @bentoml.api
        async def generate(self, prompt: str, ctx: bentoml.Context) -> str:
            text = await my_engine(prompt)              # vLLM, transformers, anything
            ctx.response.background.add_task(self.audit.after_answer, self.auditor, prompt=prompt, answer=text)
            return text

``after_answer`` runs after the response was sent (a Starlette background task): the sampler
decides (counted by reason), and a sampled request becomes an :class:`AuditJob` submitted to the
auditor by a separate asyncio task with a short timeout. A failed or slow hand-off is counted as
``audits_dropped_total{reason="handoff_error"}`` and logged; nothing is ever raised to the caller.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from auditor import AuditJob, AuditorSettings, ChatMessage, PlayerHint, Sampler, SamplingSignals, load_settings

__all__ = ["AuditHook"]

logger = logging.getLogger("interaction_auditor.hook")


class AuditHook:
    """Sampler + telemetry + fire-and-forget hand-off for one served model."""

    def __init__(self, settings: AuditorSettings | None = None, *, max_inflight: int = 256) -> None:
        from auditor import AuditorTelemetry, __version__

        self.settings = s = settings or load_settings()
        self.sampler = Sampler(
            s.sample_rate,
            low_confidence_threshold=s.low_confidence_threshold,
            boost_rate=s.boost_rate,
            max_per_minute=s.max_audits_per_minute,
            key=s.sampling_key_bytes(),
        )
        self.telemetry = AuditorTelemetry(s.metrics_model)
        self.telemetry.set_build_info(__version__)
        self.max_inflight = max_inflight
        self._tasks: set[asyncio.Task[None]] = set()

    async def after_answer(
        self,
        auditor: Any,
        request_id: str | None = None,
        *,
        prompt: str | None = None,
        messages: Sequence[dict[str, str]] | None = None,
        answer: str | None = None,
        answer_ids: Sequence[int] | None = None,
        confidence: float | None = None,
        spans: Sequence[PlayerHint | dict[str, Any]] = (),
        force: bool = False,
        flag: bool = False,
    ) -> None:
        """Decide and hand off; returns at once (the hand-off runs as its own task). Never raises.

        ``auditor`` is the ``bentoml.depends(Auditor)`` attribute of the calling service;
        ``request_id`` defaults to a random id; ``confidence`` (e.g. the mean answer-token
        probability) drives the low-confidence boost when given."""
        s = self.settings
        if not s.audit_enabled:
            return
        request_id = request_id or uuid.uuid4().hex
        try:
            hints = [h if isinstance(h, PlayerHint) else PlayerHint.model_validate(h) for h in spans]
            decision = self.sampler.decide(SamplingSignals(
                request_id=request_id,
                answer_confidence=confidence,
                caller_flag=flag,
                labelled=any(h.label != "unlabelled" for h in hints),
                force=force,
            ))
            self.telemetry.record_sampling(decision)
        except Exception:  # noqa: BLE001
            logger.exception("sampling failed")
            self._safe(self.telemetry.record_error, "sampling")
            return
        if not decision.sampled:
            return
        if len(self._tasks) >= self.max_inflight:  # the auditor is not keeping up at all
            self._count_handoff_drop()
            return
        try:
            job = AuditJob(
                request_id=request_id,
                prompt=prompt,
                messages=[ChatMessage(**m) for m in messages] if messages is not None else None,
                answer=answer,
                answer_ids=list(answer_ids) if answer_ids else None,
                spans=hints,
                sampling_reason=decision.reason,
                sampling_probability=decision.probability,
            )
        except Exception:  # noqa: BLE001
            logger.exception("could not build the audit job for %s", request_id)
            self._count_handoff_drop()
            return
        task = asyncio.get_running_loop().create_task(self._handoff(auditor, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handoff(self, auditor: Any, job: AuditJob) -> None:
        try:
            result = await asyncio.wait_for(auditor.to_async.submit(job=job), timeout=self.settings.handoff_timeout_s)
            accepted = result.get("accepted") if isinstance(result, dict) else getattr(result, "accepted", None)
            if accepted is None:
                raise RuntimeError(f"unexpected hand-off reply {result!r}")
            # a refused job (queue_full) is counted by the auditor, which owns the queue
        except Exception as e:  # noqa: BLE001 - timeouts, connection errors, a dead auditor
            logger.warning("audit hand-off of %s failed: %s: %s", job.request_id, type(e).__name__, e)
            self._count_handoff_drop()

    def _count_handoff_drop(self) -> None:
        self._safe(self.telemetry.record_drop, "handoff_error")
        self._safe(self.telemetry.record_error, "handoff")

    @staticmethod
    def _safe(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - telemetry must never break serving
            logger.exception("telemetry failed")

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
