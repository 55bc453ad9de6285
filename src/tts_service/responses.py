"""The one place where errors become responses.

`{"error": {"code", "message", ...}}` with the error's status, except under `/v1`, the OpenAI-compatible routes,
where the same errors take OpenAI's shape so its SDKs raise their usual exceptions. The app's exception handlers
(`add_error_handlers`) and the middleware's refusals (`refuse`) both answer through `error_response`.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from tts_service.errors import (
    BadRequest,
    InvalidJSON,
    MethodNotAllowed,
    NotFound,
    ServiceError,
    UnsupportedMediaType,
    ValidationFailed,
    VoiceNotFound,
)
from tts_service.urls import LEGACY_PREFIX, path_of

logger = logging.getLogger(__name__)

# The OpenAI-compatible routes (tts_service.api.openai_compat), also under the legacy prefix.
OPENAI_PREFIXES = ("/v1/", f"{LEGACY_PREFIX}/v1/")


def error_response(exc: ServiceError, scope: Scope | None = None) -> JSONResponse:
    """The single rendering of an error: `{"error": {"code", "message", ...}}` with the error's status.

    Under `/v1` (known from the request's `scope`) it is OpenAI's `{"error": {"message", "type", "param", "code"}}`.
    """
    if scope is not None and is_openai_path(scope):
        status, body = openai_error(exc)
        return JSONResponse({"error": body}, status_code=status, headers=exc.headers)
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.status_code, headers=exc.headers)


def is_openai_path(scope: Scope) -> bool:
    return (path_of(scope).rstrip("/") + "/").startswith(OPENAI_PREFIXES)


def openai_error(exc: ServiceError) -> tuple[int, dict[str, Any]]:
    """Status and body of an error as OpenAI sends it; `code` stays our stable code.

    OpenAI answers invalid parameters, an unknown voice included, with 400 where our own routes say 422 or 404.
    """
    status = exc.status_code
    if status == 422 or isinstance(exc, VoiceNotFound):
        status = 400
    if status >= 500:
        kind = "server_error"
    else:
        kind = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}.get(
            status, "invalid_request_error"
        )
    param = exc.details.get("param")
    fields = exc.details.get("fields")
    if param is None and isinstance(fields, list) and fields:
        param = str(fields[0])
    return status, {"message": exc.message, "type": kind, "param": param, "code": exc.code}


def validation_error(exc: RequestValidationError) -> ServiceError:
    """Translate FastAPI's request validation into our hierarchy: unreadable JSON is 400, the rest 422."""
    errors = exc.errors()
    if any(err.get("type") == "json_invalid" for err in errors):
        return InvalidJSON("request body is not valid JSON")
    problems = []
    for err in errors[:10]:
        loc = ".".join(str(part) for part in err.get("loc", ()) if part != "body")
        kind = err.get("type", "")
        if not loc and kind in ("model_attributes_type", "dict_type"):
            problems.append("request body must be a JSON object")
        elif kind == "extra_forbidden":
            problems.append(f"{loc}: unknown field")
        elif kind == "missing" and not loc:
            problems.append("request body is required")
        else:
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            problems.append(f"{loc or 'body'}: {message}")
    fields = sorted({".".join(str(p) for p in err.get("loc", ()) if p != "body") for err in errors} - {""})
    return ValidationFailed("; ".join(problems) or "invalid request", fields=fields)


def http_error(exc: StarletteHTTPException) -> ServiceError:
    if exc.status_code == 404:
        return NotFound("no such route")
    if exc.status_code == 405:
        return MethodNotAllowed("method not allowed on this route")
    if exc.status_code == 415:
        return UnsupportedMediaType(str(exc.detail))
    err = BadRequest(str(exc.detail))
    err.status_code = exc.status_code
    return err


async def refuse(scope: Scope, receive: Receive, send: Send, exc: ServiceError, ws_code: int) -> None:
    """Answer with `exc`: a JSON error over HTTP; for a WebSocket not yet accepted, a close with `ws_code`."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
        # Closing before accept makes the server answer the handshake with 403; the reason tells clients why.
        await send({"type": "websocket.close", "code": ws_code, "reason": exc.message[:120]})
        return
    # Over a WebSocket handshake, servers with the denial-response extension send this as a plain HTTP answer.
    await error_response(exc, scope)(scope, receive, send)


def add_error_handlers(app: FastAPI) -> None:
    """Render the service's errors, FastAPI's request validation and Starlette's HTTP errors through here."""
    app.add_exception_handler(ServiceError, _service_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)


async def _service_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    if exc.status_code >= 500:
        logger.warning("request failed", extra={"error_code": exc.code, "status": exc.status_code})
    return error_response(exc, request.scope)


async def _validation_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc), request.scope)


async def _http_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(http_error(exc), request.scope)
