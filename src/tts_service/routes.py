"""Which routers each app serves: the one list the HTTP Lambdas and the local shim build their apps from.

Each Lambda serves the routers marked with its name (`functions/<name>/app.py`); the shim serves every router,
in this order. The stream function is API Gateway's WebSocket API (`tts_service.aws.websocket`), not a router.
Routers are imported only when an app asks for them, so a Lambda imports no module it does not serve (a cold
start pays for every import).
"""

from __future__ import annotations

import importlib
from typing import Final

from fastapi import APIRouter

FUNCTIONS: Final = ("tts", "voices", "chat")
"""The Lambda functions that serve HTTP routers."""

ROUTERS: Final[tuple[tuple[str, frozenset[str]], ...]] = (
    # (`module.attribute` under tts_service.api, the functions that serve it besides the shim)
    ("health.router", frozenset(FUNCTIONS)),
    ("tts.router", frozenset({"tts"})),
    ("voices.router", frozenset({"voices"})),
    # Chunked HTTP and WebSockets: Mangum buffers the one, and the stream function serves the protocol over
    # API Gateway's WebSocket API instead of the other.
    ("stream.router", frozenset()),
    ("openai_compat.router", frozenset({"tts"})),
    ("chat.router", frozenset({"chat"})),
    ("chat.ws_router", frozenset()),
    # Lambda instances are not scrapeable; the Powertools EMF metrics cover them.
    ("metrics.router", frozenset()),
    ("tickets.router", frozenset({"voices"})),
    ("client_config.router", frozenset({"voices"})),
    ("samples.router", frozenset()),
)


def routers(function: str | None = None) -> tuple[APIRouter, ...]:
    """The routers of the Lambda `function`, or with None every router (the local shim)."""
    if function is not None and function not in FUNCTIONS:
        raise ValueError(f"no HTTP function {function!r}; known: {', '.join(FUNCTIONS)}")
    return tuple(_load(name) for name, functions in ROUTERS if function is None or function in functions)


def _load(name: str) -> APIRouter:
    module, _, attribute = name.partition(".")
    router = getattr(importlib.import_module(f"tts_service.api.{module}"), attribute)
    assert isinstance(router, APIRouter), name
    return router
