"""Helpers shared by the two services: settings from env + bento arguments, JSON errors, auth."""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from auditor import AuditorSettings, load_settings
from auditor.runtime.settings import unknown_env_vars

logger = logging.getLogger("interaction_auditor.service")


def service_settings() -> AuditorSettings:
    """``AuditorSettings`` from ``AUDITOR_*`` environment variables, overridden by bento arguments
    (``bentoml serve --arg sample_rate=0.2``). Warns about ``AUDITOR_*`` variables that match no
    setting (a typo would otherwise be silently ignored)."""
    args: dict[str, Any] = {}
    try:
        import bentoml

        args = dict(vars(bentoml.use_arguments()))
    except Exception:  # noqa: BLE001 - no bento arguments outside `bentoml serve`
        args = {}
    for name in unknown_env_vars():
        logger.warning("environment variable %s matches no auditor setting and is ignored", name)
    known = {k: v for k, v in args.items() if k.replace("-", "_") in AuditorSettings.model_fields}
    return load_settings(known)


def json_error(status: int, field: str | None, message: str, **extra: Any) -> JSONResponse:
    """The native endpoints' error body: ``{"error": "<field>: <message>", "field": ...}``."""
    text = f"{field}: {message}" if field else message
    return JSONResponse({"error": text, "field": field, **extra}, status_code=status)


def openai_error(status: int, message: str, param: str | None = None,
                 type_: str = "invalid_request_error", code: str | None = None) -> JSONResponse:
    """An error body in the OpenAI API's shape (the ``openai`` client raises it as APIStatusError)."""
    return JSONResponse(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status_code=status
    )


async def read_json(request: Request) -> Any:
    """The request body as JSON; ``ValueError`` with a readable message otherwise."""
    body = await request.body()
    if not body:
        raise ValueError("the request body is empty; send a JSON object")
    try:
        return json.loads(body)
    except json.JSONDecodeError as e:
        raise ValueError(f"the request body is not valid JSON: {e.msg} at position {e.pos}") from None


def check_bearer(request: Request, token: str | None) -> JSONResponse | None:
    """None when authorised (or no token is configured), else a 401 response."""
    if token is None:
        return None
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return None
    response = json_error(401, "authorization", "a valid bearer token is required (Authorization: Bearer <token>)")
    response.headers["WWW-Authenticate"] = 'Bearer realm="interaction-auditor"'
    return response
