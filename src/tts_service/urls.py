"""Absolute URLs the service hands out: PUBLIC_BASE_URL when set, else the request's own scheme and host.

Behind a TLS proxy or an ingress the request the service sees is plain HTTP on an inner host, so URLs built from
it would name `http://tts:8085`; PUBLIC_BASE_URL (`https://tts.example.com`) is what clients can reach. Also the
paths requests arrive on: the legacy prefix, and a request's path without its root path.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.types import Scope

from tts_service.config import Settings, get_settings

# Routes also answer under /api, as the upstream server's did; clients written for it keep working.
LEGACY_PREFIX = "/api"


def settings_of(connection: HTTPConnection) -> Settings:
    """The settings the app was built with (create_app keeps them), else the process's."""
    settings = getattr(connection.app.state, "settings", None)
    return settings if isinstance(settings, Settings) else get_settings()


def base_url(connection: HTTPConnection, settings: Settings | None = None) -> str:
    """`https://host[/prefix]` without a trailing slash: PUBLIC_BASE_URL, or what this request was sent to."""
    settings = settings or settings_of(connection)
    if settings.public_base_url:
        return settings.public_base_url.rstrip("/")
    url = connection.base_url  # scheme and Host header of this request, plus the app's root path
    scheme = "https" if url.scheme in ("https", "wss") else "http"
    return f"{scheme}://{url.netloc}{url.path}".rstrip("/")


def absolute(connection: HTTPConnection, path: str, settings: Settings | None = None) -> str:
    """`path` (starting with `/`) under the public base URL."""
    return base_url(connection, settings) + path


def websocket_url(http_url: str) -> str:
    """The ws(s) URL of an http(s) one: same host and path."""
    parts = urlsplit(http_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return parts._replace(scheme=scheme).geturl()


def path_of(scope: Scope) -> str:
    """The request path without the root path a proxy or Mangum may have prefixed."""
    path = str(scope.get("path", ""))
    root = str(scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return path
