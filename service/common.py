"""Helpers shared by the two services: settings from env + bento arguments, JSON errors, auth."""

from __future__ import annotations

import hmac
import json
import logging
import re
import uuid
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
    except RecursionError:  # a nesting bomb ("[" * 2000): the parser's recursion limit, not our bug
        raise ValueError("the request body is nested too deeply") from None


#: Request ids that may be echoed in ``X-Request-ID`` and kept in records: short, printable ASCII,
#: no separators a header or a log line could be split on. Anything else is replaced.
SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=-]{0,127}")


def safe_request_id(given: str | None) -> tuple[str, bool]:
    """``(request id, replaced)``: ``given`` when it matches :data:`SAFE_REQUEST_ID`, else a fresh
    random id and ``replaced=True`` (a caller's CR/LF, NUL or U+2028 must never reach a response
    header, where it breaks the response, nor a log line; the record notes the replacement)."""
    if given is None or given == "":
        return uuid.uuid4().hex, False
    if isinstance(given, str) and SAFE_REQUEST_ID.fullmatch(given):
        return given, False
    return uuid.uuid4().hex, True


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


class JsonBodyOnly:
    """ASGI middleware: ``POST`` to ``paths`` must send JSON (or no content type), else 415.

    BentoML parses any other content type itself, and a ``multipart/form-data`` body without a
    boundary raised ``KeyError`` inside Starlette's form parser: a 500 with a traceback in the log
    for one malformed header (found by schemathesis, issue 17)."""

    def __init__(self, app: Any, paths: tuple[str, ...] = ("/generate",)) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("method") == "POST" and scope.get("path") in self.paths:
            ctype = dict(scope.get("headers") or []).get(b"content-type", b"").split(b";")[0].strip().lower()
            if ctype not in (b"", b"application/json"):
                response = json_error(415, "content-type", "send the request body as application/json")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class ControlCharPaths:
    """ASGI middleware: a request path with control characters (``/audits/%0a``, ``%03``, ``%7f``)
    is a 400 naming ``path`` before any routing. No route has such a path; without this, BentoML's
    own router answered some of them with an undocumented plain-text 404 (its mount pattern does not
    match a newline) and the record forward raised on others (a 500 with a 6 KB traceback)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
            await json_error(400, "path", "the path contains control characters")(scope, receive, send)
            return
        await self.app(scope, receive, send)
