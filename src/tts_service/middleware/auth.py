"""Optional API keys: with `API_KEYS` set, every endpoint but health needs `Authorization: Bearer` or `X-API-Key`."""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from tts_service.errors import Unauthorized
from tts_service.middleware._asgi import WS_POLICY_VIOLATION, header, is_health, refuse
from tts_service.middleware.clients import key_fingerprint
from tts_service.observability import Metrics

logger = logging.getLogger(__name__)


def load_api_keys(spec: str | None) -> list[str]:
    """`API_KEYS`: comma-separated keys, or the path of a file with one key per line (`#` comments)."""
    if not spec or not spec.strip():
        return []
    spec = spec.strip()
    looks_like_path = spec.startswith(("/", "./", "../", "~"))
    path = Path(spec).expanduser()
    if "," not in spec and (looks_like_path or path.is_file()):
        if not path.is_file():
            # Taking the path itself as the key would "work" and silently protect nothing.
            raise ValueError("API_KEYS names a file that does not exist")
        lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
        keys = [line for line in lines if line]
        if not keys:
            raise ValueError("API_KEYS names a file with no keys")
        return keys
    return [key.strip() for key in spec.split(",") if key.strip()]


def presented_key(scope: Scope) -> str | None:
    """The key a request carries: `Authorization: Bearer <key>` or `X-API-Key: <key>`.

    WebSocket clients in browsers cannot set headers, so a WebSocket handshake may also pass `?api_key=`.
    """
    authorization = header(scope, b"authorization")
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    api_key = header(scope, b"x-api-key")
    if api_key and api_key.strip():
        return api_key.strip()
    if scope["type"] == "websocket":
        from urllib.parse import parse_qs

        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        values = query.get("api_key")
        if values and values[0]:
            return str(values[0])
    return None


class ApiKeys:
    """The configured keys, and which one (by digest, never the key) a request presents."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [key.encode() for key in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def valid(self, key: str) -> bool:
        candidate = key.encode()
        # Compare against every key, without stopping early, so timing says nothing about which one matched.
        matched = False
        for known in self._keys:
            matched |= hmac.compare_digest(candidate, known)
        return matched

    def identify(self, scope: Scope) -> str | None:
        """The fingerprint of the valid key the request carries (memoized in its state), or None."""
        state = scope.setdefault("state", {})
        if "api_key_id" not in state:
            key = presented_key(scope)
            state["api_key_id"] = key_fingerprint(key) if key is not None and self.valid(key) else None
        found = state["api_key_id"]
        return found if isinstance(found, str) else None


class ApiKeyMiddleware:
    """401 JSON (or a refused WebSocket handshake) without a valid key; health endpoints stay open."""

    def __init__(self, app: ASGIApp, *, keys: ApiKeys, metrics: Metrics) -> None:
        self.app = app
        self.keys = keys
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_health(scope) or scope.get("method") == "OPTIONS":
            await self.app(scope, receive, send)
            return
        if self.keys.identify(scope) is None:
            missing = presented_key(scope) is None
            self.metrics.observe_rejected("unauthorized")
            logger.info("unauthorized", extra={"reason": "missing key" if missing else "unknown key"})
            message = "an API key is required" if missing else "the API key is not valid"
            exc = Unauthorized(f"{message}: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
            exc.headers["WWW-Authenticate"] = 'Bearer realm="tts-service"'
            await refuse(scope, receive, send, exc, WS_POLICY_VIOLATION)
            return
        await self.app(scope, receive, send)
