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
import time
import uuid
from collections.abc import Sequence
from typing import Any

from auditor import (
    AuditJob,
    AuditorSettings,
    ChatMessage,
    PlayerHint,
    Sampler,
    SamplingSignals,
    SegmentHint,
    load_settings,
)

__all__ = ["AuditHook"]

logger = logging.getLogger("interaction_auditor.hook")


class AuditHook:
    """Sampler + telemetry + fire-and-forget hand-off for one served model."""

    def __init__(self, settings: AuditorSettings | None = None, *, max_inflight: int = 256) -> None:
        from auditor import AuditorTelemetry, __version__
        from auditor.runtime.sampling_key import ensure_sampling_key

        self.settings = s = settings or load_settings()
        # never unkeyed: an unkeyed hash of caller-chosen ids lets callers pick ids that are never
        # audited; without AUDITOR_SAMPLING_KEY the key is generated once and kept with the store
        key = s.sampling_key_bytes() or (ensure_sampling_key(s.store_url) if s.audit_enabled else None)
        self.sampler = Sampler(
            s.sample_rate,
            low_confidence_threshold=s.low_confidence_threshold,
            boost_rate=s.boost_rate,
            max_per_minute=s.max_audits_per_minute,
            key=key,
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
        granularity: str | None = None,
        segments: Sequence[SegmentHint | dict[str, Any]] = (),
        force: bool = False,
        flag: bool = False,
        request_id_replaced: bool = False,
    ) -> None:
        """Decide and hand off; returns at once (the hand-off runs as its own task). Never raises.

        ``auditor`` is the ``bentoml.depends(Auditor)`` attribute of the calling service;
        ``request_id`` defaults to a random id; ``confidence`` (e.g. the mean answer-token
        probability) drives the low-confidence boost when given; ``granularity`` and ``segments``
        (retrieved passages with ids and labels) choose the audit's players, as in the ``audit`` object."""
        s = self.settings
        if not s.audit_enabled:
            return
        request_id = request_id or uuid.uuid4().hex
        try:
            hints = [h if isinstance(h, PlayerHint) else PlayerHint.model_validate(h) for h in spans]
            segs = [g if isinstance(g, SegmentHint) else SegmentHint.model_validate(g) for g in segments]
            decision = self.sampler.decide(SamplingSignals(
                request_id=request_id,
                answer_confidence=confidence,
                caller_flag=flag,
                labelled=any(h.label != "unlabelled" for h in [*hints, *segs]),
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
                granularity=granularity,
                segments=segs,
                sampling_reason=decision.reason,
                sampling_probability=decision.probability,
                request_id_replaced=request_id_replaced,
                handoff_deadline=time.time() + s.handoff_timeout_s,
            )
        except Exception:  # noqa: BLE001
            logger.exception("could not build the audit job for %s", request_id)
            self._count_handoff_drop()
            return
        task = asyncio.get_running_loop().create_task(self._handoff(auditor, job))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handoff(self, auditor: Any, job: AuditJob) -> None:
        """One hand-off, counted exactly once. The auditor accepts a job only before its
        ``handoff_deadline``; this side waits that long plus a margin for the reply, so a job it
        gives up on (and counts as ``handoff_error``) was not accepted, and one it sees accepted is
        recorded by the auditor. A refusal (``queue_full``, ``shutdown``) is counted by the auditor."""
        wait_s = self.settings.handoff_timeout_s + max(1.0, self.settings.handoff_timeout_s)
        try:
            result = await asyncio.wait_for(auditor.to_async.submit(job=job), timeout=wait_s)
            accepted = result.get("accepted") if isinstance(result, dict) else getattr(result, "accepted", None)
            reason = result.get("reason") if isinstance(result, dict) else getattr(result, "reason", None)
            if accepted is None:
                raise RuntimeError(f"unexpected hand-off reply {result!r}")
            if not accepted and reason in ("expired", "disabled"):  # refusals the auditor does not count
                raise RuntimeError(f"the auditor refused the job: {reason}")
        except asyncio.CancelledError:  # shutting down mid-hand-off: still counted, never silent
            self._count_handoff_drop()
            raise
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
        """Let hand-offs in flight finish (each is bounded by its deadline), then cancel the rest
        (counted as ``handoff_error``): a shutdown loses no sampled request without a count."""
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=2 * self.settings.handoff_timeout_s + 1.0)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
