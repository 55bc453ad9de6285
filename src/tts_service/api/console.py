"""The web console (`frontend/`): `GET /` (its page) and `GET /assets/{file}` (its ES modules, CSS, icon).

The shim serves the source folder as it is, so a change shows on reload: every answer is `no-cache` with an ETag
(revalidated, 304 when unchanged). The `tts-frontend` image serves the same files under content-hashed names with
long cache lifetimes instead (frontend/Dockerfile). Only these two routes exist, so no API route is shadowed, and
only files of known types inside `assets/` are served: nothing else of the folder, nothing outside it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import APIRouter, Request, Response

from tts_service.errors import NotFound
from tts_service.middleware._asgi import CONSOLE_ASSETS, CONSOLE_PAGE

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}

# Everything the page loads comes from its own origin; its API calls and WebSockets go there too (the shim is the
# API). 'self' covers ws:// and wss:// of the same host. Blob URLs carry the synthesized audio and downloads.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _serve(request: Request, path: Path) -> Response:
    body = path.read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", **SECURITY_HEADERS}
    if etag in (tag.strip() for tag in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=CONTENT_TYPES[path.suffix], headers=headers)


def console_router(folder: Path) -> APIRouter:
    """Routes serving the console in `folder` (its `index.html` and `assets/`)."""
    root = folder.resolve()
    assets = root / "assets"
    index = root / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"no console at {root}: index.html is missing")
    router = APIRouter(include_in_schema=False)

    @router.api_route(CONSOLE_PAGE, methods=["GET", "HEAD"])
    async def console_page(request: Request) -> Response:
        return _serve(request, index)

    @router.api_route(CONSOLE_ASSETS + "{name:path}", methods=["GET", "HEAD"])
    async def console_asset(name: str, request: Request) -> Response:
        path = (assets / name).resolve()
        if not path.is_relative_to(assets) or path.suffix not in CONTENT_TYPES or not path.is_file():
            raise NotFound("no such file")
        return _serve(request, path)

    return router
