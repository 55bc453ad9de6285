"""The app factory: the Lambdas and the local shim build their FastAPI apps here from the same routers.

This module is also the one place where errors become responses: `{"error": {"code", "message", ...}}`, except
under `/v1`, the OpenAI-compatible routes, where the same errors take OpenAI's shape so its SDKs raise their usual
exceptions.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service import __version__, middleware
from tts_service.config import Settings, get_settings
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
from tts_service.middleware._asgi import SlowClient, path_of
from tts_service.observability import Metrics, get_metrics, tracing
from tts_service.openapi import document_errors

logger = logging.getLogger(__name__)

# Routes also answer under /api, as the upstream server's did; clients written for it keep working.
LEGACY_PREFIX = "/api"


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


class UnhandledErrorMiddleware:
    """Turn any exception that escapes a route into a JSON 500, logging its type but no traceback.

    Starlette's own last-resort handler re-raises after responding, which puts a traceback (and whatever the
    exception message holds) into the server log; this middleware sits inside it and stops that.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except SlowClient:
            raise  # not a failure: the client stopped reading, and the middleware that timed it ends the response
        except Exception as exc:
            # The route template, never the raw path: a path may hold a conversation id.
            route = getattr(scope.get("route"), "path", None)
            logger.error("unhandled error", extra={"error_type": type(exc).__name__, "route": route or "unmatched"})
            if started:
                return  # the status line is gone; the client sees a truncated body
            body = ServiceError("internal error; the request was logged")
            await error_response(body, scope)(scope, receive, send)


class JsonBodyMiddleware:
    """Bodies are JSON: declared `application/json` (or `+json`), or undeclared; any other type is 415.

    Why not read `text/plain` or form bodies as JSON too: those are the content types a web page may POST to
    any site without a CORS preflight, so reading them would let any page drive a keyless deployment from its
    visitors' browsers. A body without a content type is still read as JSON: API Gateway test events and some
    clients send none, and a browser cannot send one cross-site without a preflight.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") in ("POST", "PUT", "PATCH", "DELETE"):
            declared = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
            media = declared.split(b";")[0].strip().lower()
            if not media:
                scope = dict(scope, headers=[*scope["headers"], (b"content-type", b"application/json")])
            elif media != b"application/json" and not (media.startswith(b"application/") and media.endswith(b"+json")):
                refused = UnsupportedMediaType(
                    "request bodies are JSON: send 'Content-Type: application/json' (curl: --json)",
                    accepted=["application/json"],
                )
                await error_response(refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(
    *routers: APIRouter,
    title: str = "tts-service",
    lifespan: Any = None,
    settings: Settings | None = None,
    metrics: Metrics | None = None,
) -> FastAPI:
    """A FastAPI app serving `routers`, with the service's error mapping and operational middleware installed."""
    app = FastAPI(
        title=title,
        version=__version__,
        strict_content_type=False,
        lifespan=lifespan,
    )
    app.add_exception_handler(ServiceError, _service_error_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(UnhandledErrorMiddleware)
    for router in routers:
        app.include_router(router)
        app.include_router(router, prefix=LEGACY_PREFIX, include_in_schema=False)
    app.state.metrics = metrics or get_metrics()
    app.state.settings = settings or get_settings()
    tracing.configure()
    middleware.install(app, app.state.settings, app.state.metrics, routers, prefixes=("", LEGACY_PREFIX))
    _document_errors(app)
    return app


def _document_errors(app: FastAPI) -> None:
    """Serve an OpenAPI schema whose operations list the errors this module renders (`tts_service.openapi`)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
