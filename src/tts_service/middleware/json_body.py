"""Request bodies are JSON: any other declared content type is refused with 415."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from tts_service.errors import UnsupportedMediaType
from tts_service.responses import error_response


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
