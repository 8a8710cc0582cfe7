"""Issue 17: the OpenAPI document covers every route, with the limits the server enforces.

Before, ``/docs.json`` listed only ``/generate`` and BentoML's probes: no ``/v1/*`` and no record
route, no ``max_new_tokens`` limit, no prompt-length cap, and an error schema whose ``detail`` was a
string where BentoML sends a list. Oracles: the routes of the mounted Starlette app itself and the
settings the service runs with.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def doc():
    from service.llm import LLM

    return LLM.openapi_spec.asdict()


def test_every_route_is_documented(doc):
    from starlette.routing import Route

    from service.llm import api_app

    for route in api_app.routes:
        assert isinstance(route, Route)
        for method in route.methods - {"HEAD"}:
            assert method.lower() in doc["paths"][route.path], (method, route.path)
    assert "/generate" in doc["paths"] and doc["openapi"].startswith("3.1")


def test_limits_are_the_settings(doc):
    from service.llm import SETTINGS

    schemas = doc["components"]["schemas"]
    generate = doc["paths"]["/generate"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert generate["properties"]["prompt"]["maxLength"] == SETTINGS.max_prompt_chars
    max_new = generate["properties"]["max_new_tokens"]["anyOf"][0]
    assert (max_new["type"], max_new["minimum"], max_new["maximum"]) == ("integer", 1, SETTINGS.max_new_tokens_limit)
    chat_max = schemas["ChatCompletionRequest"]["properties"]["max_tokens"]["anyOf"][0]
    assert chat_max["type"] == "integer" and chat_max["maximum"] == SETTINGS.max_new_tokens_limit
    prompt = schemas["CompletionRequest"]["properties"]["prompt"]["anyOf"][0]
    assert prompt["maxLength"] == SETTINGS.max_prompt_chars
    limit = next(p for p in doc["paths"]["/audits"]["get"]["parameters"] if p["name"] == "limit")
    assert limit["schema"]["anyOf"][0] == {"type": "integer", "minimum": 1, "maximum": 1000}


def test_errors_are_documented_with_their_bodies(doc):
    schemas = doc["components"]["schemas"]
    detail = schemas["InvalidArgument"]["properties"]["detail"]
    assert {"type": "array", "items": {"type": "object"}} in detail["anyOf"]  # BentoML's validation errors
    for path, method, codes in (("/v1/chat/completions", "post", {"400", "404"}), ("/audit", "post", {"400", "401"}),
                                ("/audits/{audit_id}", "get", {"401", "404"}), ("/report", "get", {"400", "401"}),
                                ("/generate", "post", {"400", "415"})):
        responses = {str(k) for k in doc["paths"][path][method]["responses"]}
        assert codes <= responses, (path, responses)
    assert schemas["Error"]["required"] == ["error"]
