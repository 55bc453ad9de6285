"""Per-client rate limits with the `limits` library: a moving window per minute plus an optional burst window.

The client is its API key (by digest) when it presented a valid one, else its IP. Counters live in this
process's memory, or in Redis (`RATE_LIMIT_STORAGE_URI`) so several replicas share one budget per client.

A remote store is a dependency that may fail or hang; it must never take the service with it. Its calls run on
a few threads of their own (never the event loop's shared pool, which encodes audio), with socket timeouts and
an overall budget of `RATE_LIMIT_STORAGE_TIMEOUT_SECS`; a failure lets the request through (fail open), is
counted (`tts_dependency_failures_total{dependency="rate_limit_storage"}`) and logged, and the store is left
alone for `RATE_LIMIT_STORAGE_RETRY_SECS`, so while it is down no request waits for it.

WebSocket sessions count once at connect as requests; then each message that starts work (`speak`, `start`,
a chat message) is charged to the same budget (`MessageBudget`), refused with an `error` event when spent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from limits import RateLimitItem, RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tts_service.config import Settings
from tts_service.credentials import Credentials
from tts_service.errors import RateLimited
from tts_service.middleware._asgi import WS_TRY_AGAIN_LATER, add_headers, is_console, is_health
from tts_service.middleware.auth import identify
from tts_service.middleware.clients import ClientResolver
from tts_service.observability import Metrics
from tts_service.responses import refuse
from tts_service.urls import path_of

logger = logging.getLogger(__name__)

# Scrapers and probes poll on a schedule; budgets are for API clients.
EXEMPT_PATHS = frozenset({"/metrics"})
_NAMESPACE = "tts"
_WARN_EVERY_SECS = 60.0
_STORAGE_THREADS = 4


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

    def __init__(
        self,
        per_minute: int,
        burst: int | None = None,
        storage_uri: str | None = None,
        timeout_secs: float = 0.5,
        metrics: Metrics | None = None,
        retry_secs: float = 5.0,
    ) -> None:
        self.per_minute = per_minute
        self.items: list[RateLimitItem] = [RateLimitItemPerMinute(per_minute)]
        self.policy = f"{per_minute};w=60"
        if burst is not None and burst < per_minute:
            # A token bucket of `burst` tokens refilled at per_minute/60 per second never allows more than
            # `burst` requests in the time it takes to refill `burst` tokens: that is this second window.
            refill_secs = max(1, math.ceil(burst * 60 / per_minute))
            self.items.insert(0, RateLimitItemPerSecond(burst, refill_secs))
            self.policy += f", {burst};w={refill_secs}"
        storage = (
            storage_from_string(_sync_uri(storage_uri), **_timeouts(storage_uri, timeout_secs))
            if storage_uri
            else MemoryStorage()
        )
        if not isinstance(storage, Storage):
            raise ValueError("RATE_LIMIT_STORAGE_URI names a storage without a synchronous client")
        self.storage = storage
        self.remote = not isinstance(self.storage, MemoryStorage)
        self.strategy = MovingWindowRateLimiter(self.storage)
        self.timeout_secs = timeout_secs
        self.retry_secs = retry_secs
        """After a failed or slow call, how long the remote store is not asked (requests go through unlimited)."""
        self.metrics = metrics
        self._executor = ThreadPoolExecutor(_STORAGE_THREADS, thread_name_prefix="ratelimit") if self.remote else None
        self._skip_until = 0.0
        self._last_warning = 0.0
        self._failures = 0

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics | None = None) -> RateLimiter:
        return cls(
            settings.rate_limit_per_minute,
            settings.rate_limit_burst,
            settings.rate_limit_storage_uri,
            settings.rate_limit_storage_timeout_secs,
            metrics,
            settings.rate_limit_storage_retry_secs,
        )

    async def decide(self, client: str) -> Decision | None:
        """Count one request for `client`; None when the store failed, was too slow, or is being left alone after
        a failure: the caller lets the request through."""
        if self._executor is None:
            try:
                return self.check(client)
            except Exception as exc:
                self._failed("error", exc)
                return None
        if time.monotonic() < self._skip_until:
            return None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_secs):
                return await loop.run_in_executor(self._executor, self.check, client)
        except TimeoutError as exc:
            self._failed("timeout", exc)
        except Exception as exc:
            self._failed("error", exc)
        return None

    def _failed(self, outcome: str, exc: Exception) -> None:
        self._skip_until = time.monotonic() + self.retry_secs
        self._failures += 1
        if self.metrics is not None:
            self.metrics.dependency_failure("rate_limit_storage", outcome)
        now = time.monotonic()
        if now - self._last_warning > _WARN_EVERY_SECS:
            self._last_warning = now
            logger.warning(
                "rate limit storage failed; not limiting",
                extra={"error_type": type(exc).__name__, "outcome": outcome, "failures": self._failures},
            )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

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


def client_key(scope: Scope, credentials: Credentials, clients: ClientResolver) -> str:
    """Who a budget belongs to: a valid API key's digest; otherwise the IP, so invented or guessed keys buy no
    extra budget."""
    key_id = identify(credentials, scope) if credentials.required else None
    if key_id is not None:
        return f"key:{key_id}"
    return f"ip:{clients.resolve(scope)}"


def _timeouts(uri: str, seconds: float) -> dict[str, float]:
    """Socket timeouts for a Redis store: redis-py has none by default, and one unanswered call would hang."""
    scheme = uri.removeprefix("async+").split(":", 1)[0]
    if scheme.split("+")[0] in ("redis", "rediss") and scheme != "redis+sentinel":
        return {"socket_timeout": seconds, "socket_connect_timeout": seconds}
    return {}


def _sync_uri(uri: str) -> str:
    # The async variants (`async+redis://`) need another client library; the middleware runs the sync one in a
    # worker thread instead, so either spelling works.
    return uri.removeprefix("async+")


def refusal(limiter: RateLimiter, decision: Decision) -> RateLimited:
    """The 429 of a spent budget, with Retry-After and the RateLimit-* headers."""
    headers = decision.headers(limiter.policy)
    return RateLimited(
        f"rate limit of {limiter.per_minute} requests per minute exceeded; retry in {decision.reset_secs} s",
        headers={"Retry-After": str(decision.reset_secs), **{k.decode(): v.decode() for k, v in headers}},
        limit=limiter.per_minute,
        retry_after=decision.reset_secs,
    )


class RateLimitMiddleware:
    """429 JSON with Retry-After and RateLimit-* headers when a client is over its budget.

    Health checks and /metrics are exempt. A WebSocket counts once, at connect (its messages that start work are
    charged by `MessageBudget`). If the shared storage fails or hangs the request is let through
    (`RateLimiter.decide`): an outage of the counter must not become an outage of the service.
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

    def client_id(self, scope: Scope) -> str:
        return client_key(scope, self.credentials, self.clients)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] not in ("http", "websocket")
            or is_health(scope)
            or is_console(scope)
            or path_of(scope).rstrip("/") in EXEMPT_PATHS
            or scope.get("method") == "OPTIONS"
        ):
            await self.app(scope, receive, send)
            return
        decision = await self.limiter.decide(self.client_id(scope))
        if decision is None:
            await self.app(scope, receive, send)
            return
        if not decision.allowed:
            self.metrics.observe_rejected("rate_limited")
            await refuse(scope, receive, send, refusal(self.limiter, decision), WS_TRY_AGAIN_LATER)
            return
        headers = decision.headers(self.limiter.policy)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_headers(message, headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class MessageBudget:
    """Charges each WebSocket message that starts work (a `speak`, a `start`, a chat message) to its client's
    budget, the one its HTTP requests spend; without rate limiting it charges nothing."""

    def __init__(self, limiter: RateLimiter | None, client_id: Callable[[Scope], str], metrics: Metrics) -> None:
        self.limiter = limiter
        self.client_id = client_id
        self.metrics = metrics

    async def charge(self, scope: Scope) -> None:
        """RateLimited when the client's budget is spent (the transport sends it as an `error` event)."""
        if self.limiter is None:
            return
        decision = await self.limiter.decide(self.client_id(scope))
        if decision is not None and not decision.allowed:
            self.metrics.observe_rejected("rate_limited")
            raise refusal(self.limiter, decision)
