"""Per-client rate limits with the `limits` library: a moving window per minute plus an optional burst window.

The client is its API key (by digest) when it presented a valid one, else its IP. Counters live in this
process's memory, or in Redis (`RATE_LIMIT_STORAGE_URI`) so several replicas share one budget per client.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service.config import Settings
from tts_service.credentials import Credentials
from tts_service.errors import RateLimited
from tts_service.middleware._asgi import WS_TRY_AGAIN_LATER, add_headers, is_health, path_of, refuse
from tts_service.middleware.auth import identify
from tts_service.middleware.clients import ClientResolver
from tts_service.observability import Metrics

logger = logging.getLogger(__name__)

# Scrapers and probes poll on a schedule; budgets are for API clients.
EXEMPT_PATHS = frozenset({"/metrics"})
_NAMESPACE = "tts"
_WARN_EVERY_SECS = 60.0


@dataclass(frozen=True)
class Decision:
    """The outcome of one check: allowed or not, and what the RateLimit-* headers should say."""

    allowed: bool
    limit: int
    remaining: int
    reset_secs: int

    def headers(self, policy: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(self.reset_secs).encode()),
            (b"ratelimit-policy", policy.encode()),
        ]


class RateLimiter:
    """The limits of one app: `per_minute` per client per minute, at most `burst` back to back."""

    def __init__(self, per_minute: int, burst: int | None = None, storage_uri: str | None = None) -> None:
        self.per_minute = per_minute
        self.items: list[RateLimitItem] = [RateLimitItemPerMinute(per_minute)]
        self.policy = f"{per_minute};w=60"
        if burst is not None and burst < per_minute:
            # A token bucket of `burst` tokens refilled at per_minute/60 per second never allows more than
            # `burst` requests in the time it takes to refill `burst` tokens: that is this second window.
            refill_secs = max(1, math.ceil(burst * 60 / per_minute))
            self.items.insert(0, RateLimitItemPerSecond(burst, refill_secs))
            self.policy += f", {burst};w={refill_secs}"
        storage = storage_from_string(_sync_uri(storage_uri)) if storage_uri else MemoryStorage()
        if not isinstance(storage, Storage):
            raise ValueError("RATE_LIMIT_STORAGE_URI names a storage without a synchronous client")
        self.storage = storage
        self.remote = not isinstance(self.storage, MemoryStorage)
        self.strategy = MovingWindowRateLimiter(self.storage)

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls(settings.rate_limit_per_minute, settings.rate_limit_burst, settings.rate_limit_storage_uri)

    def check(self, client: str) -> Decision:
        """Count one request for `client` (blocking for remote storage) and say whether it may go on."""
        # The short burst window first, so a request it refuses does not use up the per-minute budget.
        allowed = all(self.strategy.hit(item, _NAMESPACE, client) for item in self.items)
        now = time.time()
        stats = [self.strategy.get_window_stats(item, _NAMESPACE, client) for item in self.items]
        remaining = max(0, min(s.remaining for s in stats))
        if allowed:
            reset_at = stats[-1].reset_time  # when the oldest request of the minute leaves the window
        else:
            reset_at = max(s.reset_time for s in stats if s.remaining <= 0) if remaining == 0 else now + 1
        reset_secs = max(0 if allowed else 1, math.ceil(reset_at - now))
        return Decision(allowed, self.per_minute, remaining, reset_secs)

    def reset(self) -> None:
        """Forget every counter (tests)."""
        self.storage.reset()


def client_key(scope: Scope, credentials: Credentials, clients: ClientResolver) -> str:
    """Who a budget belongs to: a valid API key's digest; otherwise the IP, so invented or guessed keys buy no
    extra budget."""
    key_id = identify(credentials, scope) if credentials.required else None
    if key_id is not None:
        return f"key:{key_id}"
    return f"ip:{clients.resolve(scope)}"


def _sync_uri(uri: str) -> str:
    # The async variants (`async+redis://`) need another client library; the middleware runs the sync one in a
    # worker thread instead, so either spelling works.
    return uri.removeprefix("async+")


class RateLimitMiddleware:
    """429 JSON with Retry-After and RateLimit-* headers when a client is over its budget.

    Health checks and /metrics are exempt. A WebSocket counts once, at connect. If the shared storage is down
    the request is let through (and a warning logged): an outage of the counter must not become an outage
    of the service.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limiter: RateLimiter,
        clients: ClientResolver,
        credentials: Credentials,
        metrics: Metrics,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.clients = clients
        self.credentials = credentials
        self.metrics = metrics
        self._last_warning = 0.0

    def client_id(self, scope: Scope) -> str:
        return client_key(scope, self.credentials, self.clients)

    async def _decide(self, client: str) -> Decision | None:
        try:
            if self.limiter.remote:
                return await asyncio.to_thread(self.limiter.check, client)
            return self.limiter.check(client)
        except Exception as exc:  # any storage failure: fail open, loudly but not once per request
            now = time.monotonic()
            if now - self._last_warning > _WARN_EVERY_SECS:
                self._last_warning = now
                logger.warning("rate limit storage failed; not limiting", extra={"error_type": type(exc).__name__})
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or is_health(scope)
            or path_of(scope).rstrip("/") in EXEMPT_PATHS
            or scope.get("method") == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        decision = await self._decide(self.client_id(scope))
        if decision is None:
            await self.app(scope, receive, send)
            return
        headers = decision.headers(self.limiter.policy)
        if not decision.allowed:
            self.metrics.observe_rejected("rate_limited")
            exc = RateLimited(
                f"rate limit of {self.limiter.per_minute} requests per minute exceeded; "
                f"retry in {decision.reset_secs} s",
                headers={"Retry-After": str(decision.reset_secs), **{k.decode(): v.decode() for k, v in headers}},
                limit=self.limiter.per_minute,
                retry_after=decision.reset_secs,
            )
            await refuse(scope, receive, send, exc, WS_TRY_AGAIN_LATER)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_headers(message, headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)
