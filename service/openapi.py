"""The OpenAPI document (``GET /docs.json``) of every route, with the real limits and error bodies.

BentoML 1.4.39 documents only ``@bentoml.api`` methods and mounted FastAPI apps
(``_bentoml_sdk/service/openapi.py``); the Starlette routes mounted here (``/v1/*``, ``/audit``,
``/audits``, ``/audits/{audit_id}``, ``/auditor/status``, ``/report``) were missing, and its error
schema says ``detail`` is a string where its validation errors send a list. :func:`install` wraps
``Service.openapi_spec`` once per process: the routes registered with :func:`register` are added
with their request schemas (the same pydantic models that validate them, so the document cannot
drift from the checks), the limits of the settings (prompt length, ``max_tokens``), every status
they answer and its error body; ``/generate``'s optional fields say that ``null`` is accepted; the
document is declared OpenAPI 3.1, whose schemas are JSON Schema (what pydantic writes). Schemathesis
tests the served document against the server (tests/service/test_schemathesis_e2e.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

__all__ = ["install", "register", "llm_paths", "error_schemas"]

REF = "#/components/schemas/{model}"
_REGISTRY: dict[int, Callable[[], tuple[dict[str, dict[str, Any]], dict[str, Any]]]] = {}


def register(app: Any, build: Callable[[], tuple[dict[str, dict[str, Any]], dict[str, Any]]]) -> None:
    """Document the routes of the mounted ``app``: ``build() -> (paths, component schemas)``."""
    _REGISTRY[id(app)] = build


def error_schemas() -> dict[str, Any]:
    """The error bodies: native ``{"error", "field"}``; OpenAI's ``{"error": {...}}``; BentoML's
    validation error, whose ``detail`` is a list of pydantic errors."""
    return {
        "Error": {"type": "object", "required": ["error"], "description": "A 4xx/5xx of a native endpoint.",
                  "properties": {"error": {"type": "string"}, "field": {"type": ["string", "null"]}}},
        "OpenAIError": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["message", "type"], "properties": {
                "message": {"type": "string"}, "type": {"type": "string"},
                "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}},
        "InvalidArgument": {"type": "object", "required": ["error"], "description": "Bad Request", "properties": {
            "error": {"type": "string"}, "field": {"type": ["string", "null"]},
            "detail": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]}}},
    }


def _model(schemas: dict[str, Any], model: type[BaseModel]) -> dict[str, str]:
    """Add ``model`` (and the models it references) to ``schemas``; its reference."""
    schema = model.model_json_schema(ref_template=REF)
    for name, sub in schema.pop("$defs", {}).items():
        schemas.setdefault(name, sub)
    schemas[model.__name__] = schema
    return {"$ref": REF.format(model=model.__name__)}


def _responses(codes: dict[int, str], ok: dict[str, Any], error: str = "Error") -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": "OK", "content": ok}}
    for code, why in codes.items():
        out[str(code)] = {"description": why,
                          "content": {"application/json": {"schema": {"$ref": REF.format(model=error)}}}}
    return out


def _query(name: str, schema: dict[str, Any], why: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": why}


def llm_paths(max_prompt_chars: int, max_new_tokens_limit: int) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Paths and schemas of the LLM service's Starlette routes (OpenAI-compatible and records)."""
    from auditor.runtime.records import AuditRecord
    from service.schemas import AuditRequest, ChatCompletionRequest, CompletionRequest

    schemas: dict[str, Any] = error_schemas()
    chat, completion = _model(schemas, ChatCompletionRequest), _model(schemas, CompletionRequest)
    audit_req, record = _model(schemas, AuditRequest), _model(schemas, AuditRecord)
    # the limits the server checks (service/generation.py), from the settings it runs with
    for name, field in (("ChatCompletionRequest", "max_tokens"), ("ChatCompletionRequest", "max_completion_tokens"),
                        ("CompletionRequest", "max_tokens")):
        for branch in schemas[name]["properties"][field].get("anyOf", [schemas[name]["properties"][field]]):
            if branch.get("type") == "integer":
                branch["maximum"] = max_new_tokens_limit
    prompt = schemas["CompletionRequest"]["properties"]["prompt"]
    for branch in prompt.get("anyOf", [prompt]):
        (branch if branch.get("type") == "string" else branch.setdefault("items", {}))["maxLength"] = max_prompt_chars
    schemas["OpenAIMessage"]["description"] = (f"All message contents together hold at most {max_prompt_chars} "
                                               "characters (400 `messages` otherwise).")
    for branch in schemas["OpenAIMessage"]["properties"]["content"].get("anyOf", []):
        if branch.get("type") == "string":
            branch["maxLength"] = max_prompt_chars
    sse = {"text/event-stream": {"schema": {}}}  # events: JSON chunks, then the text [DONE]
    completion_body = {"application/json": {"schema": {"type": "object", "required": ["id", "object", "choices"]}},
                       **sse}
    openai_codes = {400: "Invalid request (param names the field)", 404: "Unknown model",
                    500: "Generation failed", 503: "Overloaded"}
    auth = {401: "Bearer token required (AUDITOR_AUTH_TOKEN)"}
    down = {503: "The auditor service is unavailable"}
    json_object = {"application/json": {"schema": {"type": "object"}}}
    paths: dict[str, dict[str, Any]] = {
        "/v1/chat/completions": {"post": {
            "operationId": "openai_chat_completions", "tags": ["OpenAI-compatible"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": chat}}},
            "responses": _responses(openai_codes, completion_body, "OpenAIError")}},
        "/v1/completions": {"post": {
            "operationId": "openai_completions", "tags": ["OpenAI-compatible"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": completion}}},
            "responses": _responses(openai_codes, completion_body, "OpenAIError")}},
        "/v1/models": {"get": {"operationId": "openai_models", "tags": ["OpenAI-compatible"],
                               "responses": _responses({}, json_object)}},
        "/audit": {"post": {
            "operationId": "audit_now", "tags": ["Audit records"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": audit_req}}},
            "responses": _responses({400: "Invalid request", **auth, 422: "The players cannot be placed",
                                     500: "The audit failed", **down, 504: "The audit ran over its budget"},
                                    {"application/json": {"schema": record}})}},
        "/audits": {"get": {
            "operationId": "list_audits", "tags": ["Audit records"],
            "parameters": [
                _query("since", {"type": "string"}, "ISO-8601 (naive = UTC) or unix seconds"),
                _query("until", {"type": "string"}, "ISO-8601 (naive = UTC) or unix seconds"),
                _query("flagged", {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off", ""]},
                       "only flagged (or unflagged) records; empty: no filter"),
                _query("model", {"type": "string", "maxLength": 256}, "a model_id"),
                _query("limit", {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 1000},
                                           {"type": "string", "maxLength": 0}], "default": 50},
                       "page size; empty: the default"),
                _query("cursor", {"type": "string", "maxLength": 64}, "next_cursor of the previous page"),
            ],
            "responses": _responses({400: "Invalid query (field names the parameter)", **auth, **down},
                                    {"application/json": {"schema": {
                                        "type": "object", "required": ["audits"], "properties": {
                                            "audits": {"type": "array", "items": record},
                                            "next_cursor": {"type": ["string", "null"]}}}}})}},
        "/audits/{audit_id}": {"get": {
            "operationId": "get_audit", "tags": ["Audit records"],
            "parameters": [{"name": "audit_id", "in": "path", "required": True,
                            "schema": {"type": "string", "minLength": 1}}],
            "responses": _responses({400: "Control characters in the path, or a path that cannot be forwarded", **auth, 404: "No such audit", **down},
                                    {"application/json": {"schema": record}})}},
        "/auditor/status": {"get": {"operationId": "auditor_status", "tags": ["Audit records"],
                                    "responses": _responses({**auth, **down}, json_object)}},
        "/report": {"get": {
            "operationId": "report", "tags": ["Audit records"],
            "parameters": [
                *(_query(n, {"type": "string"}, "start of the period (ISO-8601 or unix seconds)")
                  for n in ("from", "since")),
                *(_query(n, {"type": "string"}, "end of the period (ISO-8601 or unix seconds)") for n in ("to", "until")),
                _query("model", {"type": "string", "maxLength": 256}, "a model_id"),
                _query("format", {"type": "string", "enum": ["html", "json", ""]}, "html (default, also empty) or json"),
            ],
            "responses": _responses({400: "Invalid query (field names the parameter)", **auth,
                                     500: "The report could not be built", **down},
                                    {"text/html": {"schema": {"type": "string"}}, **json_object})}},
    }
    return paths, schemas


def _nullable_defaults(spec: Any) -> None:
    """``/generate``'s optional fields accept ``null`` (their default): say so in the schema."""
    item = spec.paths.get("/generate")
    post = getattr(item, "post", None)
    try:
        media = post["requestBody"]["content"]["application/json"]
        schema = media["schema"] if isinstance(media, dict) else media.schema  # a dict or BentoML's MediaType
        props = schema["properties"] if isinstance(schema, dict) else schema.properties
    except (AttributeError, TypeError, KeyError):
        return
    post["responses"]["415"] = {"description": "The body is not application/json (service.common.JsonBodyOnly)",
                                "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}}}
    for name, prop in list(props.items()):
        if isinstance(prop, dict) and "default" in prop and prop["default"] is None and "anyOf" not in prop:
            rest = {k: v for k, v in prop.items() if k not in ("default", "title", "description")}
            props[name] = {"anyOf": [rest, {"type": "null"}], "default": None,
                           **{k: prop[k] for k in ("title", "description") if k in prop}}


def install() -> None:
    """Wrap BentoML's ``Service.openapi_spec`` (idempotent; see the module docstring)."""
    from _bentoml_sdk.service.factory import Service
    from bentoml._internal.service.openapi.specification import PathItem

    original = Service.openapi_spec
    if getattr(original.fget, "_documents_mounts", False):
        return

    def openapi_spec(self: Any) -> Any:
        import attr

        # pydantic's schemas are JSON Schema (anyOf with "null"), which is what OpenAPI 3.1 defines
        spec = attr.evolve(original.fget(self), openapi="3.1.0")  # type: ignore[union-attr]
        schemas = spec.components.setdefault("schemas", {})
        for app, _path, _name in self.mount_apps:
            build = _REGISTRY.get(id(app))
            if build is None:
                continue
            paths, components = build()
            for name, schema in components.items():
                schemas[name] = copy.deepcopy(schema)
            for route, item in paths.items():
                spec.paths[route] = PathItem(**item)
        schemas.update(error_schemas())
        _nullable_defaults(spec)
        return spec

    prop = property(openapi_spec)
    prop.fget._documents_mounts = True  # type: ignore[attr-defined]
    Service.openapi_spec = prop  # type: ignore[method-assign]
