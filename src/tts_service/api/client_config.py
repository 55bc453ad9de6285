"""`GET /client-config`: where a web console (or any client) finds the API, built from PUBLIC_BASE_URL.

The console may be served from another origin than the API (its own image behind the proxy, a CDN), so it asks
here instead of guessing: the HTTP base, the WebSocket endpoints, and whether it needs a key. Nothing secret.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tts_service import __version__
from tts_service.urls import base_url, settings_of, websocket_url

router = APIRouter(tags=["client"])


@router.get("/client-config")
async def client_config(request: Request) -> dict[str, Any]:
    """The API's absolute base URL and WebSocket endpoints, and how to authenticate."""
    settings = settings_of(request)
    api_base = base_url(request, settings)
    if settings.public_ws_url:
        # The API Gateway WebSocket API speaks both protocols on one URL.
        ws = {"tts": settings.public_ws_url, "chat": settings.public_ws_url}
    else:
        ws = {"tts": websocket_url(api_base + "/ws/tts"), "chat": websocket_url(api_base + "/ws/chat")}
    return {
        "api_base": api_base,
        "websocket": ws,
        "auth": {"api_key_required": request.app.state.credentials.required, "ws_ticket": api_base + "/ws-ticket"},
        "version": __version__,
    }
