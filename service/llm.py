"""The LLM BentoML service: serves a transformers causal LM; its traffic is audited in the background.

``bentoml serve`` (repo root; ``bentofile.yaml`` names ``service.llm:LLM``) starts this service and,
through ``bentoml.depends(Auditor)``, the auditor service in its own process.

Endpoints (one port):

- ``POST /generate`` ``{"prompt", "max_new_tokens"?, "request_id"?, "audit"?: {"force", "flag",
  "spans": [{"text" | "start"+"end", "label", "group"}]}}`` -> ``{"request_id", "model", "text",
  "prompt_tokens", "completion_tokens", "finish_reason"}``.
- OpenAI-compatible ``POST /v1/chat/completions``, ``POST /v1/completions`` (``"stream": true``
  gives server-sent events) and ``GET /v1/models``; audit hints go in the extension field
  ``audit`` (``extra_body={"audit": {...}}`` with the ``openai`` client).
- Forwarded to the auditor: ``POST /audit``, ``GET /audits``, ``GET /audits/{id}``,
  ``GET /auditor/status``, ``GET /report``.
- BentoML's ``/healthz``, ``/livez``, ``/readyz`` and ``/metrics`` (the metrics of both services:
  they share BentoML's Prometheus multiprocess directory).

Auditing never delays an answer: the response is sent first; then (a Starlette background task of
that response) the sampler decides, and a sampled request is handed to the auditor by a
fire-and-forget task with a short timeout. A hand-off that fails or times out is counted as
``audits_dropped_total{reason="handoff_error"}`` and never reaches the client. Generation itself
runs in worker threads (``AUDITOR_GENERATION_THREADS`` at a time), never on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import anyio
import bentoml
import httpx
from pydantic import Field, StrictInt, ValidationError
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from service.auditor import Auditor
from service.auditor import records_app as auditor_records_app
from service.common import SAFE_REQUEST_ID, ControlCharPaths, JsonBodyOnly, json_error, openai_error, read_json, safe_request_id, service_settings
from service import openapi, route_labels
from service.hook import AuditHook
from service.generation import Generation, Generator, IncrementalDecoder, RenderedRequest, RequestError
from service.schemas import (
    AuditHints,
    ChatCompletionRequest,
    CompletionRequest,
    GenerateResponse,
    error_field,
    validation_message,
)

logger = logging.getLogger("interaction_auditor.llm")

SETTINGS = service_settings()
route_labels.install()  # bounded `endpoint` labels on BentoML's HTTP metrics (issue 17)
_INSTANCE: LLM | None = None
REPORT_TIMEOUT_S = 120.0  # a report reads (and hash-verifies) the whole store: longer than a record lookup
# response headers of the auditor's routes passed on to the client (the report's CSP and no-store included)
FORWARDED_RESPONSE_HEADERS = ("content-type", "www-authenticate", "cache-control", "content-security-policy",
                              "x-content-type-options")


def _instance() -> LLM:
    if _INSTANCE is None:
        raise RuntimeError("the LLM service is not initialised yet")
    return _INSTANCE


@dataclass
class Answered:
    """What the post-answer step needs about one served request."""

    request_id: str
    rendered: RenderedRequest
    generation: Generation | None
    hints: AuditHints | None
    request_id_replaced: bool = False  # the caller's id was unsafe to echo (service.common.safe_request_id)


# ------------------------------------------------------------------------------------------------
# OpenAI-compatible routes and forwarded record routes (a Starlette app mounted on the service)
# ------------------------------------------------------------------------------------------------
def _sse(payload: Any) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


def _usage(gen: Generation) -> dict[str, int]:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens}


async def _parse_openai(request: Request, model_cls: type) -> Any:
    try:
        body = await read_json(request)
    except ValueError as e:
        return openai_error(400, str(e))
    try:
        return model_cls.model_validate(body)
    except ValidationError as e:
        errors = e.errors(include_url=False, include_context=False, include_input=False)
        return openai_error(400, validation_message(errors), param=error_field(errors) or None)


async def chat_completions(request: Request) -> Response:
    llm = _instance()
    req = await _parse_openai(request, ChatCompletionRequest)
    if isinstance(req, Response):
        return req
    if (bad := llm.check_model_name(req.model)) is not None:
        return bad
    try:
        messages = [{"role": m.role, "content": m.text(i)} for i, m in enumerate(req.messages)]
        rendered = llm.generator.render_chat(messages)
        max_new = req.token_limit or llm.settings.max_new_tokens
        field = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        llm.generator.check_budget(rendered, max_new, field=field)
        llm.check_hints(rendered, req.audit, field="audit.spans")
    except RequestError as e:
        return openai_error(e.status, str(e), param=e.field)
    except ValueError as e:
        return openai_error(400, str(e), param="messages")
    rid, replaced = llm.request_id(request, None)
    created = int(time.time())
    cid = f"chatcmpl-{rid}"
    answered = Answered(rid, rendered, None, req.audit, replaced)
    params = {"temperature": req.temperature, "top_p": req.top_p, "seed": req.seed, "stop": req.stop or ()}
    headers = {"X-Request-ID": rid}
    if not req.stream:
        try:
            gen = await llm.run_generation(rendered, max_new, **params)
        except Exception as e:  # noqa: BLE001
            logger.exception("generation failed")
            return openai_error(500, f"generation failed: {type(e).__name__}", type_="server_error")
        answered.generation = gen
        body = {
            "id": cid, "object": "chat.completion", "created": created, "model": llm.model_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": gen.text},
                         "logprobs": None, "finish_reason": gen.finish_reason}],
            "usage": _usage(gen),
        }
        return JSONResponse(body, headers=headers, background=BackgroundTask(llm.after_answer, answered))

    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    async def events() -> AsyncIterator[str]:
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": llm.model_name}
        yield _sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                         "logprobs": None, "finish_reason": None}]})
        try:
            async for delta in llm.stream_generation(rendered, max_new, answered, **params):
                yield _sse({**base, "choices": [{"index": 0, "delta": {"content": delta},
                                                 "logprobs": None, "finish_reason": None}]})
        except Exception as e:  # noqa: BLE001 - the status line is gone; report in-stream
            logger.exception("streaming generation failed")
            yield _sse({"error": {"message": f"generation failed: {type(e).__name__}", "type": "server_error"}})
            return
        gen = answered.generation
        assert gen is not None
        yield _sse({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                         "finish_reason": gen.finish_reason}]})
        if include_usage:
            yield _sse({**base, "choices": [], "usage": _usage(gen)})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**headers, "Cache-Control": "no-cache"},
                             background=BackgroundTask(llm.after_answer, answered))


async def completions(request: Request) -> Response:
    llm = _instance()
    req = await _parse_openai(request, CompletionRequest)
    if isinstance(req, Response):
        return req
    if (bad := llm.check_model_name(req.model)) is not None:
        return bad
    try:
        rendered = llm.generator.render_prompt(req.prompt)
        max_new = req.max_tokens or llm.settings.max_new_tokens
        llm.generator.check_budget(rendered, max_new, field="max_tokens")
        llm.check_hints(rendered, req.audit, field="audit.spans")
    except RequestError as e:
        return openai_error(e.status, str(e), param=e.field)
    rid, replaced = llm.request_id(request, None)
    created = int(time.time())
    cid = f"cmpl-{rid}"
    answered = Answered(rid, rendered, None, req.audit, replaced)
    params = {"temperature": req.temperature, "top_p": req.top_p, "seed": req.seed, "stop": req.stop or ()}
    headers = {"X-Request-ID": rid}
    prefix = req.prompt if req.echo else ""
    if not req.stream:
        try:
            gen = await llm.run_generation(rendered, max_new, **params)
        except Exception as e:  # noqa: BLE001
            logger.exception("generation failed")
            return openai_error(500, f"generation failed: {type(e).__name__}", type_="server_error")
        answered.generation = gen
        body = {
            "id": cid, "object": "text_completion", "created": created, "model": llm.model_name,
            "choices": [{"index": 0, "text": prefix + gen.text, "logprobs": None,
                         "finish_reason": gen.finish_reason}],
            "usage": _usage(gen),
        }
        return JSONResponse(body, headers=headers, background=BackgroundTask(llm.after_answer, answered))

    include_usage = bool(req.stream_options and req.stream_options.include_usage)

    async def events() -> AsyncIterator[str]:
        base = {"id": cid, "object": "text_completion", "created": created, "model": llm.model_name}
        if prefix:
            yield _sse({**base, "choices": [{"index": 0, "text": prefix, "logprobs": None, "finish_reason": None}]})
        try:
            async for delta in llm.stream_generation(rendered, max_new, answered, **params):
                yield _sse({**base, "choices": [{"index": 0, "text": delta, "logprobs": None,
                                                 "finish_reason": None}]})
        except Exception as e:  # noqa: BLE001
            logger.exception("streaming generation failed")
            yield _sse({"error": {"message": f"generation failed: {type(e).__name__}", "type": "server_error"}})
            return
        gen = answered.generation
        assert gen is not None
        yield _sse({**base, "choices": [{"index": 0, "text": "", "logprobs": None,
                                         "finish_reason": gen.finish_reason}]})
        if include_usage:
            yield _sse({**base, "choices": [], "usage": _usage(gen)})
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={**headers, "Cache-Control": "no-cache"},
                             background=BackgroundTask(llm.after_answer, answered))


async def list_models(request: Request) -> Response:
    llm = _instance()
    return JSONResponse({"object": "list", "data": [
        {"id": llm.model_name, "object": "model", "created": llm.started, "owned_by": "interaction-auditor",
         "root": llm.settings.model}
    ]})


async def forward_to_auditor(request: Request) -> Response:
    return await _instance().forward(request)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unmatched paths and methods answer the documented JSON error body, not Starlette's text."""
    status = getattr(exc, "status_code", 404)
    response = json_error(status, "path" if status == 404 else "method",
                          "no such route" if status == 404 else "method not allowed on this route")
    response.headers.update(getattr(exc, "headers", None) or {})  # a 405 keeps its Allow header
    return response


api_app = Starlette(
    routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/audit", forward_to_auditor, methods=["POST"]),
        Route("/audits", forward_to_auditor, methods=["GET"]),
        Route("/audits/{audit_id}", forward_to_auditor, methods=["GET"]),
        Route("/auditor/status", forward_to_auditor, methods=["GET"]),
        Route("/report", forward_to_auditor, methods=["GET"]),
    ],
    exception_handlers={404: _http_error, 405: _http_error},
)
# /docs.json documents these routes too, with the limits this server enforces (service/openapi.py)
openapi.register(api_app, lambda: openapi.llm_paths(SETTINGS.max_prompt_chars, SETTINGS.max_new_tokens_limit))
openapi.install()


# ------------------------------------------------------------------------------------------------
# The service
# ------------------------------------------------------------------------------------------------
@bentoml.asgi_app(api_app, path="/")
@bentoml.service(
    name="LLM",
    workers=1,
    traffic={"timeout": 300},
)
class LLM:
    auditor = bentoml.depends(Auditor)

    def __init__(self) -> None:
        from auditor import load_model

        global _INSTANCE
        self.settings = s = SETTINGS
        if s.device.startswith("cpu"):  # share the cores with the auditor process, never oversubscribe
            import torch

            torch.set_num_threads(s.cpu_threads()[0])
        self.loaded = load_model(s.model, revision=s.revision, device=s.device, dtype=s.dtype,
                                 trust_remote_code=s.trust_remote_code)
        self.generator = Generator(self.loaded, max_prompt_chars=s.max_prompt_chars,
                                   max_new_tokens_limit=s.max_new_tokens_limit)
        self.model_name = s.metrics_model
        self.audit_hook = AuditHook(s)
        self.started = int(time.time())
        self._limiter: anyio.CapacityLimiter | None = None
        self._streams: set[asyncio.Task[None]] = set()
        self._auditor_http: httpx.AsyncClient | None = None
        _INSTANCE = self
        logger.info("LLM ready: %s (%s) on %s, audit rate %.3f", s.model, self.model_name, self.loaded.device,
                    s.sample_rate)

    # ---- native API ---------------------------------------------------------------------------
    @bentoml.api
    async def generate(
        self,
        prompt: Annotated[str, Field(min_length=1, max_length=SETTINGS.max_prompt_chars,
                                     description="The prompt to complete.")],
        max_new_tokens: Annotated[StrictInt | None, Field(ge=1, le=SETTINGS.max_new_tokens_limit,
                                                          description="Tokens to generate at most.")] = None,
        request_id: Annotated[str | None, Field(
            min_length=1, max_length=256,
            description="Echoed in X-Request-ID when it matches " + SAFE_REQUEST_ID.pattern
            + "; otherwise replaced by a random id (the audit record notes it).")] = None,
        audit: AuditHints | None = None,
        ctx: bentoml.Context = None,  # type: ignore[assignment]
    ) -> GenerateResponse:
        """Complete ``prompt`` greedily. The answer is returned before any audit work starts."""
        try:
            rendered = self.generator.render_prompt(prompt)
            max_new = max_new_tokens if max_new_tokens is not None else self.settings.max_new_tokens
            self.generator.check_budget(rendered, max_new)
            self.check_hints(rendered, audit, field="audit.spans")
        except RequestError as e:
            if ctx is not None:  # BentoML copies ctx.response.status_code onto the response
                ctx.response.status_code = e.status
            return json_error(e.status, e.field, e.message)  # type: ignore[return-value]
        rid, replaced = self.request_id(ctx.request if ctx is not None else None, request_id)
        gen = await self.run_generation(rendered, max_new)
        if ctx is not None:
            ctx.response.headers["X-Request-ID"] = rid
            ctx.response.background.add_task(self.after_answer, Answered(rid, rendered, gen, audit, replaced))
        return GenerateResponse(request_id=rid, model=self.model_name, text=gen.text,
                                prompt_tokens=gen.prompt_tokens, completion_tokens=gen.completion_tokens,
                                finish_reason=gen.finish_reason)  # type: ignore[arg-type]

    # ---- helpers used by the routes -----------------------------------------------------------
    def check_model_name(self, name: str) -> Response | None:
        if name in (self.model_name, self.settings.model):
            return None
        return openai_error(404, f"The model {name!r} does not exist; this server serves {self.model_name!r}",
                            param="model", code="model_not_found")

    def check_hints(self, rendered: RenderedRequest, hints: AuditHints | None, field: str) -> None:
        """Reject audit spans and segments that are not in the prompt (400 naming the span or the
        segment id) before generating."""
        if hints is None or not (hints.spans or hints.segments):
            return
        from auditor.game.granularity import segment_players
        from auditor.game.players import PlayerError, players_from_specs, render_prompt

        try:
            players_rendered = render_prompt(self.generator.tokenizer, prompt=rendered.prompt,
                                             messages=rendered.messages)
            if hints.spans:
                players_from_specs(players_rendered, [h.to_spec() for h in hints.spans])
        except PlayerError as e:
            raise RequestError(field, str(e)) from None
        try:
            if hints.segments:
                segment_players(players_rendered, [g.to_spec() for g in hints.segments],
                                messages=rendered.messages)
        except PlayerError as e:
            raise RequestError(field.replace("spans", "segments"), str(e)) from None

    @staticmethod
    def request_id(request: Any, given: str | None) -> tuple[str, bool]:
        """``(id, replaced)`` from the body's ``request_id``, else the ``X-Request-ID`` header, else a
        random id; an id unsafe to echo is replaced (:func:`service.common.safe_request_id`)."""
        if not given and request is not None:
            given = request.headers.get("x-request-id") or None
        return safe_request_id(given)

    def _get_limiter(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.settings.generation_threads)
        return self._limiter

    async def run_generation(self, rendered: RenderedRequest, max_new: int, **params: Any) -> Generation:
        fn = functools.partial(self.generator.generate, rendered, max_new, **params)
        return await anyio.to_thread.run_sync(fn, limiter=self._get_limiter())

    async def stream_generation(self, rendered: RenderedRequest, max_new: int, answered: Answered,
                                **params: Any) -> AsyncIterator[str]:
        """Text deltas as tokens are generated (in a worker thread); sets ``answered.generation``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancel = threading.Event()

        def on_token(token: int) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, ("token", token))

        async def run() -> None:
            try:
                fn = functools.partial(self.generator.generate, rendered, max_new, on_token=on_token,
                                       cancel=cancel, **params)
                gen = await anyio.to_thread.run_sync(fn, limiter=self._get_limiter())
                queue.put_nowait(("done", gen))
            except BaseException as e:  # noqa: BLE001
                queue.put_nowait(("error", e))

        task = asyncio.create_task(run())
        decoder = IncrementalDecoder(self.generator.tokenizer, self.generator.eos_ids, params.get("stop") or ())
        try:
            while True:
                kind, value = await queue.get()
                if kind == "token":
                    if delta := decoder.push(value):
                        yield delta
                elif kind == "done":
                    if rest := decoder.flush(value.text):
                        yield rest
                    answered.generation = value
                    return
                else:
                    raise value
        finally:
            # the client went away (or we are done): stop generating; the thread then ends soon
            cancel.set()
            self._streams.add(task)
            task.add_done_callback(self._streams.discard)

    # ---- after the answer: sample, then hand off without waiting -----------------------------
    async def after_answer(self, answered: Answered) -> None:
        """Runs after the response was sent (a Starlette background task). Never raises."""
        gen, hints, rendered = answered.generation, answered.hints, answered.rendered
        if gen is None:  # the stream ended before the answer was complete
            return
        await self.audit_hook.after_answer(
            self.auditor,
            answered.request_id,
            prompt=rendered.prompt,
            messages=rendered.messages,
            answer=gen.text,
            answer_ids=gen.answer_ids,
            confidence=gen.confidence,
            spans=list(hints.spans) if hints else (),
            granularity=hints.granularity if hints else None,
            segments=list(hints.segments) if hints else (),
            force=bool(hints and hints.force),
            flag=bool(hints and hints.flag),
            request_id_replaced=answered.request_id_replaced,
        )

    # ---- record endpoints: forwarded to the auditor -----------------------------------------
    def _auditor_client(self) -> httpx.AsyncClient:
        """An HTTP client for the auditor's record routes, from the dependency's own address
        (``to_async.url``: ``file://`` Unix socket under ``bentoml serve``, ``tcp://`` or
        ``http(s)://`` for a remote deployment); in-process (``--development``) via ASGI."""
        if self._auditor_http is not None:
            return self._auditor_http
        url = getattr(getattr(self.auditor, "to_async", None), "url", None)
        transport: httpx.AsyncBaseTransport | None = None
        if isinstance(url, str) and url:
            parsed = urlparse(url)
            if parsed.scheme == "file":
                transport = httpx.AsyncHTTPTransport(uds=url2pathname(parsed.path))
                base = "http://auditor"
            elif parsed.scheme == "tcp":
                base = f"http://{parsed.netloc}"
            else:
                base = url
        else:  # the dependency is a local instance (bentoml serve --development)
            transport = httpx.ASGITransport(app=auditor_records_app)
            base = "http://auditor"
        self._auditor_http = httpx.AsyncClient(base_url=base, transport=transport)
        return self._auditor_http

    async def forward(self, request: Request) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        path = request.url.path
        timeout = {"/audit": self.settings.sync_budget_s + 30.0, "/report": REPORT_TIMEOUT_S}.get(path, 30.0)
        # the path as the client sent it (still percent-encoded): the decoded one may hold control
        # characters (GET /audits/%03) that httpx refuses to put in a URL
        raw_path = request.scope.get("raw_path") or path.encode()
        url = httpx.URL(raw_path=raw_path.split(b"?", 1)[0] + (b"?" + request.url.query.encode()
                                                               if request.url.query else b""))
        try:
            resp = await self._auditor_client().request(
                request.method, url, content=await request.body(), headers=headers, timeout=timeout,
            )
        except httpx.HTTPError as e:
            return json_error(503, None, f"the auditor service is unavailable: {type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001 - e.g. httpx.InvalidURL: a bad request, never a 500 traceback
            logger.warning("could not forward %s to the auditor: %s", request.method, type(e).__name__)
            return json_error(400, "path", "the request path cannot be forwarded")
        keep = {k: v for k, v in resp.headers.items() if k.lower() in FORWARDED_RESPONSE_HEADERS}
        return Response(resp.content, status_code=resp.status_code, headers=keep)

    @bentoml.on_shutdown
    async def shutdown(self) -> None:
        await self.audit_hook.close()
        if self._auditor_http is not None:
            await self._auditor_http.aclose()


LLM.add_asgi_middleware(JsonBodyOnly, paths=("/generate",))  # other content types: 415, never a 500
LLM.add_asgi_middleware(ControlCharPaths)  # a path with control characters: 400, before any routing
