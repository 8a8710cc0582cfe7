"""The Auditor BentoML service: audits run here, in their own process, never in the LLM's.

The LLM service depends on it with ``bentoml.depends(Auditor)``: under ``bentoml serve`` it is a
separate worker process (reached over a Unix socket), in production a separate deployment with its
own device and replicas. It owns a bounded queue and a worker thread (:class:`AuditWorker`), its
own transformers copy of the served model (on ``AUDITOR_AUDITOR_DEVICE``, default the LLM's
device), the audit record store and the audit telemetry.

Endpoints:

- ``POST /submit`` (BentoML API, used by the LLM service): queue an :class:`AuditJob`; returns at
  once, accepted or dropped (a full queue is counted as a drop).
- ``POST /audit``: audit one prompt now (synchronous; for compliance staff); returns the record.
- ``GET /audits/{audit_id}``, ``GET /audits?since=&until=&flagged=&model=&limit=&cursor=``: records
  (parsing in :mod:`service.audits_route`, shared with ``/report`` through :mod:`service.query`).
- ``GET /auditor/status``: queue, worker and store state.
- ``GET /report?from=&to=&model=&format=html|json``: the compliance report of a period
  (``auditor.reports.build``; parsing, threading and rendering in :mod:`service.report_route`).
- BentoML's own ``/healthz``, ``/livez``, ``/readyz`` (ready once the worker runs) and ``/metrics``.

The record endpoints (``/audit``, ``/audits``, ``/auditor/status``, ``/report``) require
``Authorization: Bearer <AUDITOR_AUTH_TOKEN>`` when a token is configured. The LLM service forwards
them, so they are reachable on the product's single port.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import bentoml
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from auditor import AuditJob
from service.common import check_bearer, json_error, read_json, safe_request_id, service_settings
from service import route_labels
from service.audits_route import audits_response
from service.report_route import report_response
from service.schemas import AuditRequest, SubmitResponse, validation_message, error_field

logger = logging.getLogger("interaction_auditor.auditor")

SETTINGS = service_settings()
route_labels.install()  # bounded `endpoint` labels on BentoML's HTTP metrics (issue 17)
_INSTANCE: Auditor | None = None  # the Auditor of this process (set in __init__)


def _instance() -> Auditor:
    if _INSTANCE is None:
        raise RuntimeError("the auditor is not initialised yet")
    return _INSTANCE


def _journal(s: Any) -> Any:
    """The write-ahead job journal (``AUDITOR_JOURNAL_PATH``, default beside a SQLite store).

    One journal per process: a worker recovering its journal at start cancels every job in it, so
    with ``AUDITOR_AUDITOR_WORKERS`` > 1 each worker keeps its own, ``<path>.<worker index>`` (the
    index BentoML gives the worker, 1..N, stable across its restarts), never a sibling's."""
    from auditor.runtime.journal import JobJournal, journal_path_for

    path = s.journal_path or journal_path_for(s.store_url)
    if path is not None and s.auditor_workers > 1:
        path = f"{path}.{bentoml.server_context.worker_index or 1}"
    return JobJournal(path) if path is not None else None


def _store_status(store: Any, url: str) -> dict[str, Any]:
    """Records and spooled records; a store that does not answer is a status, not an error."""
    from auditor.runtime.store_base import StoreError

    status: dict[str, Any] = {"url": url, "spooled": store.spool.depth()}
    try:
        status["records"] = store.count()
    except StoreError as error:
        status.update(records=None, error=str(error))
    return status


def _own_process() -> bool:
    """False when an LLM service lives in this process (``bentoml serve --development`` runs every
    service in one process): process-wide settings such as niceness must not slow the LLM then."""
    import sys

    llm = sys.modules.get("service.llm")
    return getattr(llm, "_INSTANCE", None) is None


# ------------------------------------------------------------------------------------------------
# Record endpoints (a Starlette app mounted on the service)
# ------------------------------------------------------------------------------------------------
async def list_audits(request: Request) -> Response:
    auditor = _instance()
    return await audits_response(request, auditor.store, auditor.settings.auth_token_value())


async def get_audit(request: Request) -> Response:
    auditor = _instance()
    if (denied := check_bearer(request, auditor.settings.auth_token_value())) is not None:
        return denied
    audit_id = request.path_params["audit_id"]
    if len(audit_id) > 128:  # longer than any audit id (AuditRecord.audit_id): unknown, and not echoed
        return json_error(404, "audit_id", "no audit with this id")
    record = await anyio.to_thread.run_sync(auditor.store.get, audit_id)
    if record is None:
        return json_error(404, "audit_id", f"no audit {audit_id!r}")
    return JSONResponse(record.model_dump(mode="json"))


async def audit_now(request: Request) -> Response:
    auditor = _instance()
    if (denied := check_bearer(request, auditor.settings.auth_token_value())) is not None:
        return denied
    try:
        body = await read_json(request)
        req = AuditRequest.model_validate(body)
        fields = req.model_dump(exclude_none=True, exclude={"request_id"})
        request_id, replaced = safe_request_id(req.request_id)  # never a CR/LF or NUL in records and logs
        job = AuditJob(**fields, request_id=request_id, request_id_replaced=replaced, sampling_reason="forced",
                       sampling_probability=1.0)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        return json_error(400, error_field(errors) or "body", validation_message(errors))
    except ValueError as e:
        return json_error(400, "body", str(e))
    if auditor.worker is None:
        return json_error(503, None, "auditing is disabled (AUDITOR_AUDIT_ENABLED=false)")
    record = await anyio.to_thread.run_sync(auditor.worker.audit_now, job, auditor.settings.sync_budget_s)
    if record.outcome == "success":
        status = 200
    elif record.outcome == "timeout":
        status = 504
    elif record.outcome == "over_budget":  # the prompt does not fit a configured limit: the error names it
        status = 422
    else:  # bad players are the caller's problem; anything else is ours
        status = 422 if (record.error or "").startswith("players") else 500
    return JSONResponse(record.model_dump(mode="json"), status_code=status)


async def auditor_status(request: Request) -> Response:
    auditor = _instance()
    if (denied := check_bearer(request, auditor.settings.auth_token_value())) is not None:
        return denied
    return JSONResponse(await anyio.to_thread.run_sync(auditor.status))


async def report(request: Request) -> Response:
    auditor = _instance()
    return await report_response(request, auditor.store, auditor.settings.auth_token_value())


records_app = Starlette(
    routes=[
        Route("/audit", audit_now, methods=["POST"]),
        Route("/audits", list_audits, methods=["GET"]),
        Route("/audits/{audit_id}", get_audit, methods=["GET"]),
        Route("/auditor/status", auditor_status, methods=["GET"]),
        Route("/report", report, methods=["GET"]),
    ]
)


# ------------------------------------------------------------------------------------------------
# The service
# ------------------------------------------------------------------------------------------------
@bentoml.asgi_app(records_app, path="/")
@bentoml.service(
    name="Auditor",
    # AUDITOR_AUDITOR_WORKERS (default 1): each worker process has its own queue and one audit thread, so
    # audits are serialised per worker; several workers share the store's chain and durable jobs
    workers=SETTINGS.auditor_workers,
    threads=4,
    traffic={"timeout": max(120.0, SETTINGS.sync_budget_s + 60.0)},
)
class Auditor:
    def __init__(self) -> None:
        from auditor import AuditorTelemetry, AuditWorker, ModelJobRunner, __version__, load_model
        from auditor.runtime.durable_jobs import JobPump, durable_jobs_for
        from auditor.runtime.spool import open_service_store

        global _INSTANCE
        self.settings = s = SETTINGS
        if _own_process() and s.audit_device.startswith("cpu"):
            import torch

            torch.set_num_threads(s.cpu_threads()[1])
        self.telemetry = AuditorTelemetry(s.metrics_model)
        self.telemetry.set_build_info(__version__)
        # behind an outage spool; a bad or unreachable AUDITOR_STORE_URL is logged, never fatal (the LLM serves)
        self.store = open_service_store(s.store_url, spool_dir=s.spool_dir, max_records=s.spool_max_records,
                                        telemetry=self.telemetry)
        self.worker = None
        self.loaded = None
        if s.audit_enabled:
            self.loaded = load_model(s.model, revision=s.revision, device=s.audit_device, dtype=s.dtype,
                                     trust_remote_code=s.trust_remote_code)
            engine = ModelJobRunner(
                self.loaded.model,
                self.loaded.tokenizer,
                s,
                model_id=s.model,
                model_revision=self.loaded.revision,
                redaction_key=s.redaction_key_bytes(),
            )
            self.worker = AuditWorker(
                engine,
                self.store,
                self.telemetry,
                queue_size=s.queue_size,
                timeout_s=s.audit_timeout_s,
                fault=s.fault,
                cpu_priority=s.auditor_cpu_priority,  # per thread: safe even when the LLM shares the process
                nice=s.auditor_nice,
                journal=_journal(s),  # accepted jobs survive kill -9 as a trace (auditor/runtime/journal.py)
            ).start()
        # forced audits are durable jobs that any live auditor runs (auditor/runtime/durable_jobs.py)
        self.jobs = durable_jobs_for(s.store_url, lease_s=2 * s.audit_timeout_s + 60) if self.worker else None
        self.pump = JobPump(self.jobs, self.worker.audit_now).start() if self.jobs and self.worker else None
        _INSTANCE = self
        logger.info("auditor ready: model %s on %s, queue %d, budget %.0f s, store %s", s.model, s.audit_device,
                    s.queue_size, s.audit_timeout_s, s.public_dict()["store_url"])

    @bentoml.api
    async def submit(self, job: AuditJob) -> SubmitResponse:
        """Queue an audit without waiting for it (the LLM service's fire-and-forget hand-off)."""
        if self.worker is None:
            return SubmitResponse(accepted=False, reason="disabled", queue_depth=0)
        if self.jobs is not None and self.pump is not None and job.sampling_reason == "forced":
            try:  # durable before it is acknowledged; run by whichever auditor claims it first
                await anyio.to_thread.run_sync(self.jobs.enqueue, job)
                self.pump.wake()
                return SubmitResponse(accepted=True, reason="queued", queue_depth=self.worker.status()["queue_depth"])
            except Exception:  # noqa: BLE001 - the database is down: the in-memory queue, as for sampled audits
                logger.warning("could not store forced audit %s as a durable job", job.request_id, exc_info=True)
        result = self.worker.submit(job)
        return SubmitResponse(accepted=result.accepted, reason=result.reason, queue_depth=result.queue_depth)

    def status(self) -> dict[str, Any]:
        worker = self.worker.status() if self.worker is not None else {"alive": False, "disabled": True}
        return {
            "worker": worker,
            "store": _store_status(self.store, self.settings.public_dict()["store_url"]),
            "model": {"id": self.settings.model, "label": self.settings.metrics_model,
                      "revision": self.loaded.revision if self.loaded else None,
                      "device": self.loaded.device if self.loaded else None},
            "settings": self.settings.public_dict(),
        }

    def __is_ready__(self) -> bool:
        return self.worker is None or self.worker.alive

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        if self.pump is not None:  # durable jobs not yet run stay in the table for the next auditor
            self.pump.stop(timeout=2.0)
        if self.worker is not None:  # drain within the grace period; what is left is stored as cancelled
            cancelled = self.worker.stop(timeout=2.0, drain_s=self.settings.shutdown_grace_s)
            logger.info("auditor stopped: %d queued audits cancelled", cancelled)
        self.store.close()
